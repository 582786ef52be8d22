//! The settings in force, as the status page lists them: each setting's value and where it
//! came from, with nothing secret among them.

use super::error::{without_password, Origin};
use super::model::SettingInForce;
use super::setting::Setting;
use super::validate::Chosen;

/// Every setting's value in force, as [`TunnelConfig::in_force`] lists them.
pub(super) fn in_force(chosen: &Chosen) -> Vec<SettingInForce> {
    Setting::ALL
        .iter()
        .map(|&setting| match chosen.get(&setting) {
            Some(raw) => SettingInForce {
                name: setting.env(),
                value: if setting.holds_proxy_url() {
                    without_password(&raw.text).into_owned()
                } else {
                    raw.text.clone()
                },
                origin: match &raw.origin {
                    Origin::Default => "default".to_string(),
                    Origin::Env => "env".to_string(),
                    Origin::Cli => "flag".to_string(),
                    Origin::File(path) => path.display().to_string(),
                    Origin::Target(at) => at.file.display().to_string(),
                },
            },
            None => SettingInForce {
                name: setting.env(),
                value: setting.default_text().replace('`', ""),
                origin: "default".to_string(),
            },
        })
        .collect()
}
