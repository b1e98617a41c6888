//! Network namespaces for the network-fault tests (tests/tests/netfaults.rs).
//!
//! Owns: a namespace `pk-nf-<unique>` the test creates (`ip netns add`, its loopback up)
//! and deletes on drop, the commands run inside it (`ip netns exec`), and the nftables
//! rules of that namespace's own ruleset. Invariants: nothing outside a namespace made
//! here is ever touched (no rule, no interface of the host namespace); every address is
//! the namespace's own loopback; a rule table is named by the caller and matches only
//! the ports the caller gives. Needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`), `ip`
//! (iproute2) and `nft` (nftables, `CONFIG_NF_TABLES`).

use std::{
    ffi::OsStr,
    io::Write as _,
    process::{Command, Stdio},
};

/// Why a namespace, a command in it or its rules failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetnsError {
    /// Not running as root (uid 0): namespaces and nft need it.
    NotRoot,
    /// A program could not be started at all (not installed?).
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// A command ran and failed.
    Failed {
        /// What was run.
        what: String,
        /// Its stderr.
        stderr: String,
    },
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsError::NotRoot => write!(f, "not root (uid 0): network namespaces need it"),
            NetnsError::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            NetnsError::Failed { what, stderr } => write!(f, "{what} failed: {}", stderr.trim()),
        }
    }
}

impl std::error::Error for NetnsError {}

/// Runs `cmd` (stdin `input`, if any) and returns its stdout; a failure names `what`.
fn run(mut cmd: Command, what: &str, input: Option<&str>) -> Result<String, NetnsError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn {
            program: program.clone(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| NetnsError::Spawn {
                program: program.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetnsError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            what: what.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs as root (uid 0, from /proc/self/status).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `cmd` (program, arguments, environment changes, working dir) run inside the
/// namespace `ns`: `ip netns exec <ns> <program> <args…>`.
pub fn wrap_in(ns: &str, cmd: &Command) -> Command {
    let mut w = Command::new("ip");
    w.args([OsStr::new("netns"), OsStr::new("exec"), OsStr::new(ns)])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        w.current_dir(d);
    }
    w
}

/// A network namespace of its own, deleted on drop (with whatever rules it holds).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `pk-nf-<unique(prefix)>` with its loopback up.
    pub fn create(prefix: &str) -> Result<Netns, NetnsError> {
        if !is_root() {
            return Err(NetnsError::NotRoot);
        }
        let name = crate::unique(&format!("pk-nf-{prefix}"));
        let mut add = Command::new("ip");
        add.args(["netns", "add", &name]);
        run(add, &format!("ip netns add {name}"), None)?;
        // From here on the drop deletes it.
        let ns = Netns { name };
        let mut up = Command::new("ip");
        up.args(["-n", &ns.name, "link", "set", "lo", "up"]);
        run(up, "ip link set lo up (in the namespace)", None)?;
        Ok(ns)
    }

    /// [`Netns::create`], or, when that fails: under CI (`CI` set) a panic (the test
    /// must run there), otherwise `None` after printing `SKIPPED` and the reason.
    pub fn create_or_skip(prefix: &str, test: &str) -> Option<Netns> {
        match Netns::create(prefix) {
            Ok(ns) => Some(ns),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("{test}: cannot make a network namespace under CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                None
            }
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.wrap(&Command::new(program))
    }

    /// `cmd` run inside the namespace (see [`wrap_in`]).
    pub fn wrap(&self, cmd: &Command) -> Command {
        wrap_in(&self.name, cmd)
    }

    /// Loads `rules` (an `nft -f` script) into the namespace's own ruleset.
    pub fn nft(&self, rules: &str) -> Result<(), NetnsError> {
        let mut nft = self.command("nft");
        nft.args(["-f", "-"]);
        run(nft, &format!("nft -f - in {}", self.name), Some(rules)).map(|_| ())
    }

    /// Drops, on TCP port `port` of the namespace's loopback (both directions, the
    /// output hook: every packet on lo passes it once), every packet for which `matcher`
    /// holds (nft expression, e.g. `numgen random mod 10 == 0`; empty: every packet),
    /// in table `inet <table>` (replaced if it exists).
    pub fn drop_on_port(&self, table: &str, port: u16, matcher: &str) -> Result<(), NetnsError> {
        let _ = self.remove_table(table);
        self.nft(&format!(
            "table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    oifname \"lo\" tcp dport {port} {matcher} counter drop\n    oifname \"lo\" tcp sport {port} {matcher} counter drop\n  }}\n}}\n"
        ))
    }

    /// Deletes table `inet <table>` of the namespace's ruleset.
    pub fn remove_table(&self, table: &str) -> Result<(), NetnsError> {
        self.nft(&format!("delete table inet {table}\n"))
    }

    /// The number of packets each rule of `inet <table>` dropped so far (`nft list`).
    pub fn dropped_packets(&self, table: &str) -> Result<u64, NetnsError> {
        let mut nft = self.command("nft");
        nft.args(["list", "table", "inet", table]);
        let text = run(nft, "nft list table", None)?;
        Ok(text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum())
    }

    /// Reads a whole topic of the broker at `bootstrap` (in the namespace) with kcat:
    /// the values, one per message.
    pub fn kcat_values(&self, bootstrap: &str, topic: &str) -> Result<Vec<Vec<u8>>, NetnsError> {
        let mut kcat = self.command("kcat");
        kcat.args([
            "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%S %s\n",
        ]);
        let out = kcat.output().map_err(|source| NetnsError::Spawn {
            program: "kcat".into(),
            source,
        })?;
        if !out.status.success() {
            return Err(NetnsError::Failed {
                what: "kcat -C".into(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(crate::parse_sized(&out.stdout))
    }

    /// Writes `values` to `topic` with kcat (acks=all, keyed `k<i>` so they spread over
    /// the partitions), in batches of at most 100 messages, so that a reader with small
    /// fetch limits needs many fetches (a fetch returns at least one whole batch).
    pub fn kcat_produce(
        &self,
        bootstrap: &str,
        topic: &str,
        values: &[String],
    ) -> Result<(), NetnsError> {
        let mut kcat = self.command("kcat");
        kcat.args([
            "-b",
            bootstrap,
            "-P",
            "-t",
            topic,
            "-K",
            "\t",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=20",
            "-X",
            "batch.num.messages=100",
        ]);
        let text: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("k{i}\t{v}\n"))
            .collect();
        run(kcat, "kcat -P", Some(&text)).map(|_| ())
    }

    /// The sum of the end offsets of `topic`'s `partitions` (kcat -Q), i.e. how many
    /// messages it holds when it was never trimmed.
    pub fn end_offsets_total(
        &self,
        bootstrap: &str,
        topic: &str,
        partitions: u32,
    ) -> Result<u64, NetnsError> {
        let mut kcat = self.command("kcat");
        kcat.args(["-b", bootstrap, "-Q", "-m", "5"]);
        for p in 0..partitions {
            kcat.args(["-t", &format!("{topic}:{p}:-1")]);
        }
        let text = run(kcat, "kcat -Q", None)?;
        // Lines: `<topic> [<p>] offset <n>`.
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit_once("offset ").map(|(_, n)| n.trim()))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
