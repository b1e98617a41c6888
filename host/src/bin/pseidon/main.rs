//! `pseidon`: loads the plugins named by the conf and runs commands against them.
//! Errors are one line on stderr and exit code 2; never a panic or a backtrace.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "pseidon: internal error{location}: {}",
            msg.replace('\n', " ")
        );
    }));
    let args = match cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pseidon: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run(args: cli::Cli) -> anyhow::Result<ExitCode> {
    pseidon_host::logging::init_subscriber_with(
        args.command.default_log_filter(),
        args.log_format.into(),
    )?;
    cli::dispatch(args)
}
