//! The `keyward` binary: a thin layer of command-line parsing over the library crates.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod cli;
mod commands;
mod settings;

use std::process::ExitCode;

/// The request path allocates small, short-lived buffers on every request; mimalloc serves
/// them from per-thread free lists, measurably cheaper than the system allocator here (see
/// docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.exit_code)
        }
    }
}

/// Turns transparent huge pages off for this process, before the heap grows. mimalloc asks
/// for them on its memory, and the first touch of each 2 MiB page then zeroes all of it on
/// the thread that touched it: on a virtual machine, milliseconds at a time. The usage fold,
/// which takes some megabytes every ten seconds, stalled requests on its thread for up to
/// 45 ms that way; with 4 KiB pages the stall is gone and a request costs no more CPU
/// (docs/BENCHMARKS.md). Redis and databases advise the same for the same reason.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // Only a wish: a kernel without the setting leaves the pages as they were.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
