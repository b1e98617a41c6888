//! `pseidon metrics`: one scrape of a running `pseidon run`'s `/metrics` (address
//! from `--http-listen`, else the conf's `http-listen`), printed as it came. The
//! metrics live in the process that consumes and produces (lag, queue depth,
//! unfinished groups are its own state), so this asks that process; it starts no
//! consumer of its own. Nothing listening is an error (exit 2) naming the address.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use pseidon_host::conf::HTTP_LISTEN_KEY;

use super::Global;

/// Arguments of `pseidon metrics`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints one scrape of the running `pseidon run` (its /metrics). The metrics \
    live in that process: the lag, the unfinished groups and the sink's queue are its own state, \
    so they are read from it rather than computed by a second consumer.\n\n\
    Examples:\n  \
    pseidon metrics\n  \
    pseidon metrics --http-listen 127.0.0.1:9644 | grep pseidon_kafka_lag"
)]
pub struct Args {
    /// The address of the running instance [default: the conf's `http-listen`].
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub http_listen: Option<SocketAddr>,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    pseidon_host::conf::parse_listen(s)
}

/// Prints one scrape.
pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let addr = match args.http_listen {
        Some(a) => a,
        None => {
            let conf = global.load_conf()?;
            conf.http_listen.with_context(|| {
                format!(
                    "conf file {} has no `{HTTP_LISTEN_KEY}` and no --http-listen was given: no endpoint to scrape",
                    conf.path.display()
                )
            })?
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let body = get(addr, "/metrics", timeout)?;
    std::io::stdout()
        .lock()
        .write_all(&body)
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// GETs `path` from `addr` (HTTP/1.0, so the server closes after the body).
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!(
            "nothing answers at {addr} (is `pseidon run` running with http-listen = \"{addr}\"?)"
        )
    })?;
    stream.set_read_timeout(Some(timeout)).context("socket")?;
    stream.set_write_timeout(Some(timeout)).context("socket")?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("cannot send the request to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read the answer of {addr}"))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => anyhow::bail!("{addr} sent an incomplete HTTP answer"),
        Err(e) => anyhow::bail!("{addr} did not answer HTTP: {e}"),
    };
    let code = response.code.unwrap_or(0);
    let body = raw.split_off(head_len);
    if code != 200 {
        anyhow::bail!(
            "{addr}{path} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}
