//! A delaying TCP proxy on loopback: the stand-in for `tc netem delay` on a kernel
//! without `CONFIG_NET_SCH_NETEM` (tests/tests/netfaults.rs).
//!
//! Owns: a listener on `127.0.0.1:<port>` and, per accepted connection, one connection to
//! the upstream (the broker) and two pipes (client to broker, broker to client). Each
//! pipe holds every chunk it reads for `delay` before it writes it on, in order, so each
//! direction gets `delay` of added one-way latency (a request and its answer: 2 x delay
//! more round trip), as netem on an interface both directions pass would. Bandwidth is
//! not limited. Invariants: it only ever connects to the given upstream address; it
//! stops accepting, and shuts every connection it made, on drop.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// A running proxy; stopped (and its connections shut) on drop.
pub struct DelayProxy {
    addr: SocketAddr,
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes passed on, both directions together.
    pub bytes: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on `127.0.0.1:port` and forwards each connection to `upstream`, every
    /// chunk held `delay` in each direction.
    pub fn start(port: u16, upstream: SocketAddr, delay: Duration) -> std::io::Result<DelayProxy> {
        let delay_us = Arc::new(AtomicU64::new(micros(delay)));
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let bytes = Arc::new(AtomicU64::new(0));
        {
            let stop = Arc::clone(&stop);
            let streams = Arc::clone(&streams);
            let bytes = Arc::clone(&bytes);
            let delay_us = Arc::clone(&delay_us);
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                        let mut all = streams.lock().unwrap_or_else(|p| p.into_inner());
                        all.push(c);
                        all.push(s);
                    }
                    pipe(&client, &server, Arc::clone(&delay_us), Arc::clone(&bytes));
                    pipe(&server, &client, Arc::clone(&delay_us), Arc::clone(&bytes));
                }
            });
        }
        Ok(DelayProxy {
            addr,
            delay_us,
            stop,
            streams,
            bytes,
        })
    }

    /// Changes the delay of every chunk read from now on (the chunks already held keep
    /// theirs; order is kept either way).
    pub fn set_delay(&mut self, delay: Duration) {
        self.delay_us.store(micros(delay), Ordering::SeqCst);
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One direction: a reader thread stamps each chunk read from `from` and a writer thread
/// writes it to `to` once it is the delay (`delay_us`, at the read) old. EOF or an error on either side shuts the
/// writing side of `to` (and the reading of `from`).
fn pipe(from: &TcpStream, to: &TcpStream, delay_us: Arc<AtomicU64>, bytes: Arc<AtomicU64>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = Duration::from_micros(delay_us.load(Ordering::SeqCst));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Read);
        // Dropping tx ends the writer once it wrote what it holds.
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
