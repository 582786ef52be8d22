//! Certificates made by the real `openssl` for the TLS tests: a private CA that signs the
//! exporter's certificate (for `localhost` and 127.0.0.1) and an expired one, a CA nobody
//! trusts, and a client CA with a client certificate for mutual TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_tool;

/// Paths of the PEM files in one directory.
pub struct Pki {
    pub dir: PathBuf,
}

/// Runs the real `openssl` with `args` in `dir`, requiring success.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require_tool("openssl", "openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// A client certificate signed by the client CA for `name` (subject CN and DNS SAN):
    /// the paths of its certificate and key.
    pub fn client_named(&self, name: &str) -> (String, String) {
        self.client_signed(name, "client-ca")
    }

    /// A client certificate for `name` signed by the CA `ca` (`client-ca`, or `other-ca`
    /// which no tunnel trusts for clients): the paths of its certificate and key.
    pub fn client_signed(&self, name: &str, ca: &str) -> (String, String) {
        let run = |args: &[&str]| openssl(&self.dir, args);
        let (key, csr, crt, ext) = (
            format!("{name}-{ca}.key"),
            format!("{name}-{ca}.csr"),
            format!("{name}-{ca}.crt"),
            format!("{name}-{ca}.ext"),
        );
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
        )
        .unwrap();
        let subject = format!("/CN={name}");
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        (self.path(&crt), self.path(&key))
    }

    /// Makes every certificate under `dir`.
    pub fn create(dir: &Path) -> Pki {
        let run = |args: &[&str]| openssl(dir, args);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [
            ("ca", "Tunnel Test CA"),
            ("other-ca", "Untrusted CA"),
            ("client-ca", "Client CA"),
        ] {
            let mut args = vec!["req", "-x509"];
            args.extend_from_slice(&ec);
            let (key, crt, subj) = (
                format!("{name}.key"),
                format!("{name}.crt"),
                format!("/CN={cn}"),
            );
            args.extend_from_slice(&["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]);
            run(&args);
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, ca, ext, days) in [
            ("server", "ca", "server.ext", "2"),
            ("untrusted-server", "other-ca", "server.ext", "2"),
            ("client", "client-ca", "client.ext", "2"),
            // Valid until a day before it was issued: expired.
            ("expired-server", "ca", "server.ext", "-1"),
        ] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req"];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
            run(&args);
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                days,
                "-extfile",
                ext,
            ]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }
}
