//! The config file of `thinglake run`: TOML whose keys are the options' long names with
//! underscores, the limits in a `[limits]` table and the quotas in a `[quotas]` table. Its values
//! stand in for the options that neither a flag nor a variable gave, and clap parses them like
//! flags: the file needs no copy of the options, and its values are checked as theirs are.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// The file's tables and the help heading of the options each holds; the other options are
/// top-level keys.
const TABLES: [(&str, &str); 2] = [("limits", crate::config::limits::HEADING), ("quotas", crate::config::quotas::HEADING)];

/// The command line of `cmd` to parse again: the options `matches` took from the command line,
/// then the file's value of each option that neither the command line nor a variable set.
pub(crate) fn command_line(cmd: &Command, matches: &ArgMatches, path: &Path) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let file: toml::Table = toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let mut line = vec![OsString::from(cmd.get_name())];
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) == Some(ValueSource::CommandLine) {
            let values = matches.get_raw(id).into_iter().flatten();
            push(&mut line, arg, values.map(OsString::from).collect());
        }
    }
    for (table, key, value) in entries(&file) {
        let in_file = |arg: &&Arg| {
            let heading = arg.get_help_heading();
            arg.get_id() != "config" && TABLES.iter().find(|(_, h)| Some(*h) == heading).map(|(t, _)| *t) == table
        };
        let Some(arg) = cmd.get_arguments().filter(in_file).find(|arg| arg.get_id() == key) else {
            let key = table.map_or_else(|| key.to_string(), |table| format!("[{table}] {key}"));
            anyhow::bail!("config file {}: unknown key {key}", path.display());
        };
        if matches!(matches.value_source(key), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => anyhow::bail!("config file {}: {key} must be a string, number or boolean", path.display()),
        };
        if arg.get_action().takes_values() {
            push(&mut line, arg, vec![text.into()]);
        } else {
            let on: bool = text.parse().with_context(|| format!("config file {}: {key} must be true or false", path.display()))?;
            if on {
                push(&mut line, arg, Vec::new());
            }
        }
    }
    Ok(line)
}

/// The file's keys: `(table, key, value)`, `table` `None` at the top level.
fn entries(file: &toml::Table) -> impl Iterator<Item = (Option<&'static str>, &str, &toml::Value)> {
    file.iter().flat_map(|(key, value)| match (TABLES.iter().find(|(t, _)| t == key), value) {
        (Some((table, _)), toml::Value::Table(inner)) => inner.iter().map(|(k, v)| (Some(*table), k.as_str(), v)).collect::<Vec<_>>(),
        _ => vec![(None, key.as_str(), value)],
    })
}

/// `--name=value` for each value, `--name` alone for a flag that takes none.
fn push(line: &mut Vec<OsString>, arg: &Arg, values: Vec<OsString>) {
    let long = arg.get_long().expect("every option of thinglake run has a long name");
    if !arg.get_action().takes_values() {
        line.push(format!("--{long}").into());
        return;
    }
    for value in values {
        let mut one = OsString::from(format!("--{long}="));
        one.push(value);
        line.push(one);
    }
}
