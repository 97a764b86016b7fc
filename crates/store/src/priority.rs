//! SQLite's threads yield the CPU to request handling.
//!
//! Each SQLite connection runs on a thread of its own (sqlx's worker). On a busy machine those
//! threads compete with the async runtime's for the same cores, and the usage flush (tens of
//! milliseconds of CPU a second with thousands of keys in use) then holds up requests a time
//! slice at a time: with the server on one core at half load, the 99th percentile of latency
//! was about three times higher with them at normal priority (docs/BENCHMARKS.md). At a nice
//! value of 10 they still get about a tenth of a contended core, so a flush still finishes
//! well within its second under full load, and a request preempts them as soon as it arrives.
//!
//! Linux only, where a nice value is per thread; elsewhere nothing changes. The threads are
//! found by the name sqlx gives them: if that ever changes, nothing is lowered and nothing
//! breaks.

/// The nice value SQLite's threads are given (unless they run lower already).
#[cfg(target_os = "linux")]
const NICE: i32 = 10;

/// sqlx names them `sqlx-sqlite-worker-N`; the kernel keeps the first 15 bytes.
#[cfg(target_os = "linux")]
const THREAD_NAME: &str = "sqlx-sqlite-wor";

/// Lowers the priority of every SQLite worker thread of this process. Cheap enough to run
/// after each new connection (it reads a few files under `/proc`).
#[cfg(target_os = "linux")]
pub(crate) fn lower_sqlite_threads() {
    use rustix::process::{getpriority_process, setpriority_process};
    for pid in sqlite_threads() {
        // Raising a nice value needs no privilege; a failure only leaves it as it was.
        if getpriority_process(Some(pid)).is_ok_and(|nice| nice < NICE) {
            let _ = setpriority_process(Some(pid), NICE);
        }
    }
}

/// The ids of this process' SQLite worker threads, found by name.
#[cfg(target_os = "linux")]
fn sqlite_threads() -> impl Iterator<Item = rustix::process::Pid> {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten();
    tasks.flatten().filter_map(|task| {
        let named = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with(THREAD_NAME));
        let tid = task.file_name().to_str()?.parse::<i32>().ok();
        named
            .then_some(tid)
            .flatten()
            .and_then(rustix::process::Pid::from_raw)
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_sqlite_threads() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use rustix::process::getpriority_process;

    fn lowered_threads() -> usize {
        sqlite_threads()
            .filter(|&pid| getpriority_process(Some(pid)).is_ok_and(|n| n >= NICE))
            .count()
    }

    #[tokio::test]
    async fn sqlite_threads_run_at_a_lower_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::Store::connect(&url).await.expect("store");
        assert!(store.ping().await);
        // The writer's connection and at least one reader's.
        assert!(lowered_threads() >= 2, "{} lowered", lowered_threads());
    }
}
