//! `bench-tool`: the helpers `bench/run` calls between measured runs: topic creation,
//! deletion and counting, kcat's input file, and the final report (medians, `RESULT`
//! lines, `bench/RESULTS.md`).

#[allow(dead_code)] // shared by the bench binaries; each uses a part
#[path = "../common.rs"]
mod common;
#[path = "../report.rs"]
mod report;

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

/// Helpers of `bench/run`.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a topic and waits until every partition has a leader.
    CreateTopic {
        /// Broker bootstrap address.
        #[arg(long)]
        bootstrap: String,
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
    /// Deletes topics (missing ones are fine).
    DeleteTopics {
        /// Broker bootstrap address.
        #[arg(long)]
        bootstrap: String,
        /// Topic names.
        topics: Vec<String>,
    },
    /// Prints how many messages a topic holds (from its watermarks).
    Count {
        /// Broker bootstrap address.
        #[arg(long)]
        bootstrap: String,
        /// Topic name.
        #[arg(long)]
        topic: String,
    },
    /// Prints how many messages of a topic consumer group `group` has committed (the
    /// sum over partitions of its committed offset minus the low watermark; the copy
    /// rows' end: a transactional copy commits its offsets in its transactions).
    Committed {
        /// Broker bootstrap address.
        #[arg(long)]
        bootstrap: String,
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Consumer group.
        #[arg(long)]
        group: String,
    },
    /// Writes `count` newline-terminated payloads of `size` bytes (kcat -P's input),
    /// the same payloads the Rust producers send.
    PayloadFile {
        /// Payload size.
        #[arg(long)]
        size: usize,
        /// Number of payloads.
        #[arg(long)]
        count: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Reads the samples of a run and prints the `RESULT` lines; writes the markdown
    /// report.
    Report(report::ReportArgs),
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("bench-tool: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Command::CreateTopic {
            bootstrap,
            topic,
            partitions,
        } => common::create_topic(&bootstrap, &topic, partitions),
        Command::DeleteTopics { bootstrap, topics } => common::delete_topics(&bootstrap, &topics),
        Command::Count { bootstrap, topic } => {
            println!("{}", common::topic_count(&bootstrap, &topic)?);
            Ok(())
        }
        Command::Committed {
            bootstrap,
            topic,
            group,
        } => {
            println!("{}", common::committed_count(&bootstrap, &topic, &group)?);
            Ok(())
        }
        Command::PayloadFile { size, count, out } => {
            let payloads = common::Payloads::new(size);
            let file = File::create(&out).with_context(|| format!("create {}", out.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            for i in 0..count {
                w.write_all(payloads.get(i))?;
                w.write_all(b"\n")?;
            }
            w.flush()
                .with_context(|| format!("write {}", out.display()))?;
            Ok(())
        }
        Command::Report(r) => report::run(&r),
    }
}
