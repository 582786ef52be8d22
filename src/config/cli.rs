//! The command line: Pingora's own `Opt` (`-c`, `-t`, `-d`, `-u`) plus one flag per setting,
//! made from the settings table (`setting.rs`), so a setting is declared in one place.
//!
//! Flags take text, not typed values, so that a bad flag is refused with the same message as a bad
//! env value or conf key (`--server-port="abc": expected a port 1-65535`), and after every other
//! problem has been collected.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Parser};
use pingora_core::server::configuration::Opt;

use super::error::{Origin, RawValue};
use super::model::Role;
use super::setting::Setting;
use crate::build_info;

/// Forward Prometheus scrapes to an exporter it cannot reach directly, and record the tunnel's
/// own metrics.
///
/// Each setting is read from, lowest first: its default, the `tunnel:` section of the conf file
/// (-c), its environment variable, then its flag.
#[derive(Debug, Parser)]
#[command(name = "prometheus-tunnel", version = build_info::VERSION)]
pub struct Cli {
    /// `agent` to run as an agent beside the exporters, dialling the tunnel at
    /// TUNNEL_ADDRESS; without it, the tunnel.
    #[arg(value_enum)]
    pub role: Option<RoleArg>,

    /// Pingora's server options.
    #[command(flatten)]
    pub pingora: Opt,

    /// The settings given as flags.
    #[command(flatten)]
    pub settings: SettingFlags,
}

/// The role named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Dial the tunnel and serve this host's exporters' scrapes over that connection.
    Agent,
}

impl Cli {
    /// The role the process runs in.
    pub fn role(&self) -> Role {
        match self.role {
            Some(RoleArg::Agent) => Role::Agent,
            None => Role::Tunnel,
        }
    }

    /// The settings given as flags, as raw values to be merged over the other layers.
    pub fn values(&self) -> Vec<RawValue> {
        self.settings.values.clone()
    }
}

/// One flag per setting of the table, in its order.
#[derive(Debug, Clone, Default)]
pub struct SettingFlags {
    values: Vec<RawValue>,
}

/// The flag of `setting`, its help ending with where else it can be set and its default.
fn flag(setting: Setting) -> Arg {
    let help = format!(
        "{} [env: {}] [conf: tunnel.{}] [default: {}]",
        setting.help(),
        setting.env(),
        setting.key(),
        setting.default_text()
    )
    .replace('`', "");
    let arg = Arg::new(setting.env())
        .long(setting.flag().trim_start_matches('-').to_string())
        .value_name(setting.value_name())
        .help(help);
    if setting.is_switch() {
        arg.num_args(0..=1).default_missing_value("true")
    } else {
        arg.num_args(1)
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        Setting::ALL
            .iter()
            .fold(cmd, |cmd, setting| cmd.arg(flag(*setting)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = Setting::ALL
            .iter()
            .filter_map(|setting| {
                matches
                    .get_one::<String>(setting.env())
                    .map(|text| RawValue {
                        setting: *setting,
                        origin: Origin::Cli,
                        text: text.clone(),
                    })
            })
            .collect();
        Ok(SettingFlags { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
