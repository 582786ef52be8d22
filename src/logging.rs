//! Logging through `log` + `env_logger`: info by default, debug with `DEBUG=true`, and
//! `RUST_LOG`, when set, wins over both.

/// Installs the logger; call once, after the configuration is known.
pub fn init(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}
