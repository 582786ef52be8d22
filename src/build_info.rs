//! What this binary is: version, commit and build time, stamped in by `build.rs`.

/// Release version (`VERSION` build argument, else the crate version).
pub const VERSION: &str = env!("TUNNEL_VERSION");
/// Commit the binary was built from (`GIT_COMMIT` build argument, else `git rev-parse`).
pub const GIT_COMMIT: &str = env!("TUNNEL_GIT_COMMIT");
/// RFC 3339 UTC build time (`BUILD_DATE` build argument, else the time of the build).
pub const BUILD_DATE: &str = env!("TUNNEL_BUILD_DATE");
