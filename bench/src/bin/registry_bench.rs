//! `registry-bench [PLUGIN.so]`: wake-up latency of `reg_get_wait` after a late
//! `register` (1000 samples) and the time to load one plugin (the `hello` test
//! plugin next to this binary, unless a path is given). Prints `RESULT` lines.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use pseidon_bench::registry::{ms, plugin_load, us, wakeup_latency};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let plugin = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("libpseidon_test_plugin_hello.so"))
            .ok_or("no directory for the test plugin")?,
    };
    if !plugin.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p pseidon-test-plugin-hello` (or pass a plugin path)",
            plugin.display()
        )
        .into());
    }

    let wake = wakeup_latency(1000, Duration::from_micros(500))?;
    println!("reg_get_wait wake-up after a late register from another thread, {wake}");
    println!(
        "RESULT reg_get_wait_wakeup_p99 value={:.1} unit=us",
        us(wake.p99)
    );

    let load = plugin_load(&plugin, 20)?;
    println!(
        "plugin load of {} (dlopen + layout check + init), {} fresh copies: p50={:.2} ms max={:.2} ms",
        plugin.display(),
        load.samples,
        ms(load.p50),
        ms(load.max)
    );
    println!("RESULT plugin_load_ms value={:.2} unit=ms", ms(load.p50));
    Ok(())
}
