//! How many client connections the tunnel can hold: in the file descriptors it may open, and
//! in the memory it is given. `MAX_CONNECTIONS`, when unset, is derived from both at start-up,
//! so that neither a pod's memory limit nor `ulimit -n` is reached before connections are
//! refused (503, counted) while the metrics port and the exporter side keep working.
//!
//! File descriptors: a client connection is one, the exporter connection its scrape uses is at
//! most another, and exporter connections kept idle between scrapes are capped at the same
//! count; a reserve stays for the process itself, the metrics port's clients and name lookups.
//! Memory: an idle client connection costs a few KiB, a scrape in flight a few tens (buffers
//! on both sides); [`MEMORY_PER_CONNECTION`] is the budget per connection above a reserve.

use std::path::Path;

/// File descriptors kept for everything but proxy-port clients and their exporter connections:
/// stdio, the runtime's epoll and event descriptors, listeners, metrics-port clients, files
/// read on reload, name lookups; and connections refused over the limit, which Pingora's accept
/// loop takes in bursts (up to tokio's cooperative budget of 128) before they are closed. Past
/// the limit, `accept` fails and Pingora's loop stops accepting for a second.
pub const RESERVED_FDS: u64 = 64 + 128;

/// Memory budget of one client connection, counted as a scrape in flight (idle ones cost a
/// tenth of it).
pub const MEMORY_PER_CONNECTION: u64 = 64 * 1024;

/// Memory kept for everything else: the runtime, the target table, the metrics.
pub const RESERVED_MEMORY: u64 = 32 * 1024 * 1024;

/// The fewest connections a derived limit allows, however small the machine.
pub const MIN_DERIVED_CONNECTIONS: usize = 16;

/// The most connections a derived limit allows (the old fixed default was 4096; a large
/// machine gets more, but not without bound).
pub const MAX_DERIVED_CONNECTIONS: usize = 65_536;

/// What the process may use, as read at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Open files allowed (`RLIMIT_NOFILE`'s soft limit, after raising it to the hard one).
    pub open_files: u64,
    /// Memory the process is given: its cgroup's limit, or the machine's memory.
    pub memory: Option<u64>,
}

impl Capacity {
    /// Reads this process's limits, first raising its open-file limit to the hard limit as Go
    /// programs and servers such as HAProxy do (a soft limit of 1024 is a shell default, not a
    /// choice made for a proxy).
    pub fn of_this_process() -> Capacity {
        let open_files = rlimit::increase_nofile_limit(u64::MAX)
            .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
            .unwrap_or(1024);
        Capacity {
            open_files,
            memory: memory_limit(Path::new("/")),
        }
    }

    /// Client connections the open-file limit allows: a third of what is left after the
    /// reserve (the connection, its scrape's exporter connection, an idle one).
    pub fn connections_by_files(&self) -> usize {
        usize::try_from(self.open_files.saturating_sub(RESERVED_FDS) / 3).unwrap_or(usize::MAX)
    }

    /// Client connections the memory allows, if it is known.
    pub fn connections_by_memory(&self) -> Option<usize> {
        self.memory.map(|memory| {
            usize::try_from(memory.saturating_sub(RESERVED_MEMORY) / MEMORY_PER_CONNECTION)
                .unwrap_or(usize::MAX)
        })
    }

    /// The default `MAX_CONNECTIONS`: what both limits allow, within
    /// [`MIN_DERIVED_CONNECTIONS`]..=[`MAX_DERIVED_CONNECTIONS`].
    pub fn default_max_connections(&self) -> usize {
        let by_memory = self.connections_by_memory().unwrap_or(usize::MAX);
        self.connections_by_files()
            .min(by_memory)
            .clamp(MIN_DERIVED_CONNECTIONS, MAX_DERIVED_CONNECTIONS)
    }

    /// Exporter connections kept idle between scrapes, over all exporters: as many as client
    /// connections, which is as many as can be in use at once.
    pub fn idle_exporter_connections(max_connections: usize) -> usize {
        max_connections
    }
}

/// The memory limit of this process's cgroup (v2, or v1), or else the machine's memory.
fn memory_limit(root: &Path) -> Option<u64> {
    let machine = machine_memory(root);
    let cgroup = cgroup_memory_limit(root);
    match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

/// `memory.max` of the process's cgroup v2 (or `memory.limit_in_bytes` of v1); `None` when
/// unlimited or not readable.
fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    let own = std::fs::read_to_string(root.join("proc/self/cgroup")).unwrap_or_default();
    // cgroup v2: "0::/path"; inside a container the path is often "/", the namespace's root.
    let v2_path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/');
    let candidates = [
        root.join("sys/fs/cgroup").join(v2_path).join("memory.max"),
        root.join("sys/fs/cgroup/memory.max"),
        root.join("sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ];
    candidates.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        // "max", or v1's "unlimited" spelled as a number near 2^63.
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|bytes| *bytes < (1 << 60))
    })
}

/// `MemTotal` from `/proc/meminfo`.
fn machine_memory(root: &Path) -> Option<u64> {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tighter_of_files_and_memory_decides() {
        let mib = 1024 * 1024;
        // A pod with 128 MiB and a large file limit: memory decides.
        let pod = Capacity {
            open_files: 1 << 20,
            memory: Some(128 * mib),
        };
        assert_eq!(pod.default_max_connections(), 1536);
        // `ulimit -n 1024` on a large machine: files decide, with room for the exporter side.
        let shell = Capacity {
            open_files: 1024,
            memory: Some(16 * 1024 * mib),
        };
        assert_eq!(shell.default_max_connections(), 277);
        assert!(3 * shell.default_max_connections() as u64 + RESERVED_FDS <= 1024);
        // Never below the floor, never above the ceiling.
        let tiny = Capacity {
            open_files: 200,
            memory: Some(33 * mib),
        };
        assert_eq!(tiny.default_max_connections(), MIN_DERIVED_CONNECTIONS);
        let huge = Capacity {
            open_files: 1 << 30,
            memory: None,
        };
        assert_eq!(huge.default_max_connections(), MAX_DERIVED_CONNECTIONS);
    }

    #[test]
    fn cgroup_limits_are_read_and_unlimited_ones_ignored() {
        let root = tempfile::tempdir().expect("dir");
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(
            "proc/meminfo",
            "MemTotal:       16384000 kB\nMemFree: 1 kB\n",
        );
        write("proc/self/cgroup", "0::/kubepods/pod1\n");
        write("sys/fs/cgroup/kubepods/pod1/memory.max", "max\n");
        assert_eq!(
            memory_limit(root.path()),
            Some(16_384_000 * 1024),
            "unlimited: the machine's"
        );
        write("sys/fs/cgroup/kubepods/pod1/memory.max", "134217728\n");
        assert_eq!(memory_limit(root.path()), Some(134_217_728));
        let v1 = tempfile::tempdir().expect("dir");
        let path = v1.path().join("sys/fs/cgroup/memory");
        std::fs::create_dir_all(&path).expect("mkdir");
        std::fs::write(path.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
        assert_eq!(cgroup_memory_limit(v1.path()), None, "v1's unlimited");
        std::fs::write(path.join("memory.limit_in_bytes"), "268435456\n").expect("write");
        assert_eq!(cgroup_memory_limit(v1.path()), Some(268_435_456));
    }
}
