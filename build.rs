//! Fills in the build facts that `/version` and `prometheus_tunnel_build_info` report.
//!
//! The Dockerfile and CI pass `VERSION`, `GIT_COMMIT` and `BUILD_DATE`; a plain `cargo build`
//! falls back to the crate version, `git rev-parse` and the current time, so a local binary
//! still says what it is.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    for var in ["VERSION", "GIT_COMMIT", "BUILD_DATE", "SOURCE_DATE_EPOCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // Rebuild when HEAD moves so the commit stays true.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");

    let version = non_empty_env("VERSION")
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    let commit = non_empty_env("GIT_COMMIT")
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    let date = non_empty_env("BUILD_DATE").unwrap_or_else(build_date);

    println!("cargo:rustc-env=TUNNEL_VERSION={version}");
    println!("cargo:rustc-env=TUNNEL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=TUNNEL_BUILD_DATE={date}");
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!commit.is_empty()).then_some(commit)
}

/// RFC 3339 UTC time of the build, or of `SOURCE_DATE_EPOCH` for reproducible builds.
fn build_date() -> String {
    let secs = non_empty_env("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
