//! A consumer process for the datasource tests: loads the real `libpseidon_kafka.so` as a
//! host does, reads a topic through `pseidon.kafka.util.datasource`, and reports on
//! stdout (flushed after every line, so a SIGKILL loses nothing it printed):
//!
//! ```text
//! READY                                     the reader is open
//! G <group-id> <attempt> <messages>         a group was handed out
//! M <group-id> <partition> <offset> <value> one message of it
//! T <offset> <timestamp-ms|-> <key|-> <h1=v1,h2=v2|->   with `--meta`, after each M line
//! D <group-id>                              the group was marked done
//! STATUS ready=<n> run=<n> done=<n> lost=<n> at the end, from `groups()`
//! F <group-id> <status>                     with `--fail-on`, the group was marked failed
//! POISON failed=<n> split=<n> dead=<n>     at the end, after STATUS
//! LOST <group-id>                           at the end, each lost group
//! DEAD <group-id>                           at the end, each dead group
//! MARK <id> ok | MARK <id> err <error>     the outcome of each `--mark ID`, at the end
//! TERM <signal>                             SIGINT/SIGTERM arrived: the group in hand was
//!                                           finished, the reader is closed (commits, leaves)
//! END <messages>                            clean end
//! ERR <error>                               an error (exit code 2)
//! ```
//!
//! Usage: `consume_child --plugin SO --bootstrap B --topic T --group G --db PATH
//!   [--expect N] [--idle-ms MS] [--no-done] [--sleep-ms MS] [--async-done N] [--mark ID]... [--meta] [--fail-on TEXT] [--set key=value]...`
//! `--fail-on TEXT` marks a group failed (`Source::mark_failed`) instead of done when one
//! of its message values contains TEXT (a poison message).
//! `--sleep-ms` waits after each group, before marking it done (a slow user).
//! `--async-done N`: a worker thread does the wait and the `mark_done`, with up to N
//! groups in flight, while the main thread takes the next groups (as a processor does);
//! on SIGTERM the groups in flight are finished before the reader is closed.
//! It ends once `--expect` messages were delivered (if given) and nothing came for
//! `--idle-ms` (default 10000). Logs go to stderr.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    process::exit,
    time::{Duration, Instant},
};

use pseidon_plugin_api::{
    ConfEntry, ConfKind, ConfView, GroupFilter, GroupStatus, InitContext, PluginModRef,
    ReaderOptions, Registry,
    ffi::FfiLogLevel,
    reexports::abi_stable::{library::lib_header_from_path, std_types::RStr},
};

extern "C" fn log_to_stderr(level: FfiLogLevel, plugin: RStr<'_>, target: RStr<'_>, msg: RStr<'_>) {
    eprintln!("[{level:?}] {plugin} {target}: {msg}");
}

struct Args {
    plugin: PathBuf,
    topic: String,
    expect: Option<usize>,
    idle: Duration,
    mark_done: bool,
    sleep: Duration,
    mark: Vec<String>,
    meta: bool,
    async_done: usize,
    fail_on: Option<String>,
    conf: Vec<(String, String)>,
}

fn parse_args() -> Args {
    let mut a = Args {
        plugin: PathBuf::new(),
        topic: String::new(),
        expect: None,
        idle: Duration::from_secs(10),
        mark_done: true,
        sleep: Duration::ZERO,
        fail_on: None,
        mark: Vec::new(),
        meta: false,
        async_done: 0,
        conf: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--plugin" => a.plugin = PathBuf::from(val()),
            "--bootstrap" => a.conf.push(("kafka.bootstrap.servers".into(), val())),
            "--topic" => a.topic = val(),
            "--group" => a.conf.push(("kafka.group.id".into(), val())),
            "--db" => a.conf.push(("pseidon-kafka.status-db".into(), val())),
            "--expect" => a.expect = Some(val().parse().unwrap_or_else(|_| fail("--expect N"))),
            "--idle-ms" => {
                a.idle =
                    Duration::from_millis(val().parse().unwrap_or_else(|_| fail("--idle-ms MS")))
            }
            "--no-done" => a.mark_done = false,
            "--mark" => a.mark.push(val()),
            "--meta" => a.meta = true,
            "--async-done" => {
                a.async_done = val()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| fail("--async-done N (N >= 1)"))
            }
            "--fail-on" => a.fail_on = Some(val()),
            "--no-group" => a.conf.retain(|(k, _)| k != "kafka.group.id"),
            "--sleep-ms" => {
                a.sleep =
                    Duration::from_millis(val().parse().unwrap_or_else(|_| fail("--sleep-ms MS")))
            }
            "--set" => {
                let kv = val();
                let (k, v) = kv
                    .split_once('=')
                    .unwrap_or_else(|| fail("--set key=value"));
                a.conf.push((k.to_string(), v.to_string()));
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    a
}

fn fail(msg: &str) -> ! {
    // One line (the test reads `ERR` lines; abi_stable's load errors span many).
    let line: String = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = line.chars().take(600).collect();
    println!("ERR {line}");
    let _ = std::io::stdout().flush();
    exit(2)
}

fn main() {
    let args = parse_args();
    let header = lib_header_from_path(&args.plugin).unwrap_or_else(|e| fail(&format!("load: {e}")));
    let module = header
        .init_root_module::<PluginModRef>()
        .unwrap_or_else(|e| fail(&format!("root module: {e}")));
    let conf = ConfView::new(
        args.conf
            .iter()
            .map(|(k, v)| ConfEntry {
                key: k.clone(),
                kind: ConfKind::String,
                value: v.clone(),
            })
            .collect(),
    );
    let ctx = InitContext {
        registry: Registry::new("host"),
        conf,
        plugin_path: args.plugin.clone(),
    };
    let registry = ctx.registry.clone();
    if let Err(e) = module.init()(ctx.to_ffi(log_to_stderr, FfiLogLevel::Info)).into_result() {
        fail(&format!("init: {}", pseidon_plugin_api::Error::from(e)));
    }
    // SIGTERM/SIGINT end the loop between groups: the reader is closed as a host does.
    let mut signals = pseidon_host::signals::Termination::install()
        .unwrap_or_else(|e| fail(&format!("signals: {e}")));
    let source = registry
        .reg_get_wait_source("pseidon.kafka.util.datasource", Duration::from_secs(5))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut reader = source
        .reader(&[args.topic.as_str()], ReaderOptions::default())
        .unwrap_or_else(|e| fail(&e.to_string()));
    // --async-done: the worker that waits and marks done, fed through a bounded channel.
    let worker = (args.async_done > 0).then(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(args.async_done - 1);
        let source = source.clone();
        let sleep = args.sleep;
        let handle = std::thread::spawn(move || {
            for id in rx {
                std::thread::sleep(sleep);
                if let Err(e) = source.mark_done(&id) {
                    fail(&format!("mark_done {id}: {e}"));
                }
                let mut out = std::io::stdout();
                let _ = writeln!(out, "D {id}");
                let _ = out.flush();
            }
        });
        (tx, handle)
    });
    // Not held locked: the --async-done worker prints its `D` lines meanwhile (each
    // write locks stdout on its own, so a group's lines stay together).
    let mut out = std::io::stdout();
    let _ = writeln!(out, "READY");
    let _ = out.flush();
    let mut delivered = 0usize;
    let mut last = Instant::now();
    loop {
        if let Some(signal) = signals.wait_timeout(Duration::ZERO) {
            let _ = writeln!(out, "TERM {signal}");
            let _ = out.flush();
            break;
        }
        match reader.next_group(Duration::from_millis(500)) {
            Ok(Some(g)) => {
                last = Instant::now();
                let mut text = format!("G {} {} {}\n", g.id(), g.attempt(), g.messages().len());
                for m in g.messages() {
                    let v = String::from_utf8_lossy(m.value().unwrap_or_default());
                    text.push_str(&format!(
                        "M {} {} {} {v}\n",
                        g.id(),
                        m.partition(),
                        m.offset()
                    ));
                    if args.meta {
                        let ts = m.timestamp_ms().map_or("-".to_string(), |t| t.to_string());
                        let key = m.key().map_or("-".into(), String::from_utf8_lossy);
                        let hs: Vec<String> = m
                            .headers()
                            .iter()
                            .map(|h| {
                                format!(
                                    "{}={}",
                                    h.key(),
                                    String::from_utf8_lossy(h.value().unwrap_or_default())
                                )
                            })
                            .collect();
                        let hs = if hs.is_empty() {
                            "-".to_string()
                        } else {
                            hs.join(",")
                        };
                        text.push_str(&format!("T {} {ts} {key} {hs}\n", m.offset()));
                    }
                }
                delivered += g.messages().len();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                if let Some((tx, _)) = &worker {
                    if args.mark_done {
                        // Blocks while N groups are in flight (the processor's back-pressure).
                        let _ = tx.send(g.id().to_string());
                    }
                    continue;
                }
                if !args.sleep.is_zero() {
                    std::thread::sleep(args.sleep);
                }
                let poisoned = args.fail_on.as_deref().is_some_and(|needle| {
                    g.messages().iter().any(|m| {
                        String::from_utf8_lossy(m.value().unwrap_or_default()).contains(needle)
                    })
                });
                if poisoned {
                    match source.mark_failed(g.id(), "poison message (test)", None) {
                        Ok(s) => {
                            let _ = writeln!(out, "F {} {s}", g.id());
                            let _ = out.flush();
                        }
                        Err(e) => fail(&format!("mark_failed {}: {e}", g.id())),
                    }
                } else if args.mark_done {
                    if let Err(e) = source.mark_done(g.id()) {
                        fail(&format!("mark_done {}: {e}", g.id()));
                    }
                    let _ = writeln!(out, "D {}", g.id());
                    let _ = out.flush();
                }
            }
            Ok(None) => {
                let enough = args.expect.is_none_or(|n| delivered >= n);
                if enough && last.elapsed() >= args.idle {
                    break;
                }
            }
            Err(e) => fail(&e.to_string()),
        }
        if args.expect.is_some_and(|n| delivered >= n) && last.elapsed() >= args.idle {
            break;
        }
    }
    if let Some((tx, handle)) = worker {
        // The groups in flight are finished before the reader is closed.
        drop(tx);
        let _ = handle.join();
    }
    for id in &args.mark {
        match source.mark_done(id) {
            Ok(()) => writeln!(out, "MARK {id} ok"),
            Err(e) => writeln!(out, "MARK {id} err {e:?}"),
        }
        .unwrap_or_default();
    }
    if let Err(e) = reader.close() {
        fail(&format!("close: {e}"));
    }
    let groups = source
        .groups(&GroupFilter::default())
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for g in &groups {
        *counts.entry(g.status.as_str()).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "STATUS ready={} run={} done={} lost={}",
        counts.get("ready").unwrap_or(&0),
        counts.get("run").unwrap_or(&0),
        counts.get("done").unwrap_or(&0),
        counts.get("lost").unwrap_or(&0)
    );
    let _ = writeln!(
        out,
        "POISON failed={} split={} dead={}",
        counts.get("failed").unwrap_or(&0),
        counts.get("split").unwrap_or(&0),
        counts.get("dead").unwrap_or(&0)
    );
    for g in groups.iter().filter(|g| g.status == GroupStatus::Lost) {
        let _ = writeln!(out, "LOST {}", g.id);
    }
    for g in groups.iter().filter(|g| g.status == GroupStatus::Dead) {
        let _ = writeln!(out, "DEAD {}", g.id);
    }
    let _ = module.shutdown()(10_000);
    let _ = writeln!(out, "END {delivered}");
    let _ = out.flush();
}
