//! Forward proxies for the tests that reach the tunnel or an exporter through one: `tinyproxy`
//! (HTTP CONNECT) and `microsocks` (SOCKS5), both from Debian.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_tool, wait_for_port, write_file, Helper};

/// `tinyproxy` on a free port, optionally with basic-auth credentials.
pub fn tinyproxy(dir: &Path, credentials: Option<(&str, &str)>) -> (Helper, u16) {
    let bin = require_tool("tinyproxy", "tinyproxy");
    let port = free_port();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 100\nAllow 127.0.0.1\nLogLevel Info\n"
    );
    if let Some((user, pass)) = credentials {
        conf.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let conf_path = write_file(dir, &format!("tinyproxy-{port}.conf"), &conf);
    let child = Command::new(bin)
        .arg("-d")
        .arg("-c")
        .arg(conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tinyproxy");
    wait_for_port(port, Duration::from_secs(10));
    (Helper(child), port)
}

/// `microsocks` on a free port, optionally with RFC 1929 credentials.
pub fn microsocks(credentials: Option<(&str, &str)>) -> (Helper, u16) {
    let bin = require_tool("microsocks", "microsocks");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, pass)) = credentials {
        cmd.args(["-u", user, "-P", pass]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start microsocks");
    wait_for_port(port, Duration::from_secs(10));
    (Helper(child), port)
}
