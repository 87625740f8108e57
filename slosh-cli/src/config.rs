//! The `--config` file: every flag of `serve` as a top-level TOML key.
//!
//! Nothing here knows a setting by name. The keys are read off clap's own
//! definition of the flags (`--poll-timeout` is `poll_timeout`), and each
//! value is handed to that flag's own value parser, so a new flag is a new
//! key with the same notation (`"30s"`, `30`, `"64KiB"`) and the same
//! validation, written once.
//!
//! Precedence: a key is applied only where [`ArgMatches::value_source`] says
//! the flag was given neither on the command line nor in the environment, so
//! a flag beats the environment, which beats the file, which beats the
//! built-in default. Every key is still checked, applied or not: a broken
//! file is refused as a whole rather than only where it happens to matter.

use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// The id of the flag naming the file itself; it is not a key in the file.
pub(crate) const CONFIG_ID: &str = "config";

/// Why the config file was refused. Each message names the file and, where
/// there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Unreadable {
        /// The file as named by `--config`.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file as named by `--config`.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A key that is no flag of `serve` (a typo, or a table).
    #[error("{}: unknown key {key:?}; the keys are: {known}", path.display())]
    UnknownKey {
        /// The file as named by `--config`.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// Every key the file may hold, comma-separated.
        known: String,
    },
    /// One setting given twice, under its key and its alternative spelling.
    #[error("{}: {key:?} and {alias:?} are the same setting; give it once", path.display())]
    Duplicate {
        /// The file as named by `--config`.
        path: PathBuf,
        /// The key.
        key: String,
        /// Its alternative spelling.
        alias: String,
    },
    /// A value of a TOML type the key cannot take (a table, a date, a list
    /// for a single value).
    #[error("{}: key {key:?} must be {expected} (found: {found})", path.display())]
    WrongType {
        /// The file as named by `--config`.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// The TOML type given.
        found: &'static str,
    },
    /// A value the flag's own parser refuses.
    #[error("{}: key {key:?} = {value}: {reason} (as for --{flag})", path.display())]
    BadValue {
        /// The file as named by `--config`.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value as TOML.
        value: String,
        /// The flag whose notation the key shares.
        flag: String,
        /// The parser's reason.
        reason: String,
    },
}

/// One key of the file: a flag of `serve`.
#[derive(Debug, Clone)]
struct Key {
    /// The flag's long name in snake case: `poll_timeout`.
    name: String,
    /// The flag's field name when it differs (`cors_origins` for
    /// `--cors-origin`), accepted too because a list reads naturally plural.
    alias: Option<String>,
    /// clap's id of the flag.
    id: String,
    /// The long flag: `poll-timeout`.
    long: String,
    /// How the flag takes values.
    action: ArgAction,
}

/// The keys of the flags in `command`: every long flag but `--config`,
/// `--help` and `--version`.
fn keys(command: &Command) -> Vec<Key> {
    command
        .get_arguments()
        .filter(|arg| arg.get_id() != CONFIG_ID)
        .filter(|arg| {
            matches!(
                arg.get_action(),
                ArgAction::Set
                    | ArgAction::Append
                    | ArgAction::SetTrue
                    | ArgAction::SetFalse
                    | ArgAction::Count
            )
        })
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let name = long.replace('-', "_");
            let id = arg.get_id().as_str().to_string();
            Some(Key {
                alias: (id != name).then(|| id.clone()),
                name,
                id,
                long: long.to_string(),
                action: arg.get_action().clone(),
            })
        })
        .collect()
}

/// `T`'s flags as a command that reads only what it is given: no defaults,
/// no environment, nothing required, and the on/off and counting flags
/// turned into flags taking a value (`--demo=false`, `--verbose=2`) so that
/// a flag absent from the arguments is absent from the matches. Updating
/// from such matches touches exactly the fields given.
fn file_command<T: Args>() -> Command {
    T::augment_args(Command::new("config"))
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .mut_args(|arg: Arg| {
            let arg = arg.default_value(None).env(None).required(false);
            match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count => {
                    arg.action(ArgAction::Set).num_args(1)
                }
                _ => arg,
            }
        })
}

/// Reads `path` and applies it to `target`: see [`apply_text`].
pub(crate) fn apply_file<T: Args + FromArgMatches>(
    target: &mut T,
    matches: &ArgMatches,
    path: &Path,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    apply_text(target, matches, path, &text)
}

/// Checks every key of the TOML `text` against `T`'s flags and applies
/// those whose flag `matches` (the matches `target` was parsed from) did not
/// take from the command line or the environment. `path` only names the
/// file in messages.
pub(crate) fn apply_text<T: Args + FromArgMatches>(
    target: &mut T,
    matches: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<(), ConfigError> {
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: error.to_string(),
            })?;
    // Keys from the flags as declared: `file_command` changes their actions.
    let keys = keys(&T::augment_args(Command::new("serve")));
    let command = file_command::<T>();
    let mut seen: Vec<&Key> = Vec::new();
    for (written, value) in &table {
        let Some(key) = keys
            .iter()
            .find(|key| key.name == *written || key.alias.as_deref() == Some(written.as_str()))
        else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: written.clone(),
                known: keys
                    .iter()
                    .map(|key| key.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if seen.iter().any(|other| other.id == key.id) {
            return Err(ConfigError::Duplicate {
                path: path.to_path_buf(),
                key: key.name.clone(),
                alias: key.alias.clone().unwrap_or_default(),
            });
        }
        seen.push(key);
        let arguments = arguments(key, value).map_err(|expected| ConfigError::WrongType {
            path: path.to_path_buf(),
            key: written.clone(),
            expected,
            found: value.type_str(),
        })?;
        let bad_value = |error: clap::Error| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: written.clone(),
            value: value.to_string(),
            flag: key.long.clone(),
            reason: reason(&error),
        };
        // Parsed even when the command line or environment wins, so that a
        // broken file is refused the same whatever else is set.
        let given = command
            .clone()
            .try_get_matches_from(arguments)
            .map_err(bad_value)?;
        let from_outside = matches!(
            matches.value_source(&key.id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !from_outside {
            target.update_from_arg_matches(&given).map_err(bad_value)?;
        }
    }
    Ok(())
}

/// The flag arguments a TOML value stands for, or what the key takes
/// instead. Strings and integers are passed as written for the flag's parser
/// to judge (`30` and `"30s"` alike); a list is repeated flags.
fn arguments(key: &Key, value: &toml::Value) -> Result<Vec<String>, &'static str> {
    let flag = |text: &dyn std::fmt::Display| format!("--{}={text}", key.long);
    match (&key.action, value) {
        (ArgAction::SetTrue, toml::Value::Boolean(on)) => Ok(vec![flag(on)]),
        // `--no-x` means off, so `no_x = true` means the field is false.
        (ArgAction::SetFalse, toml::Value::Boolean(on)) => Ok(vec![flag(&!on)]),
        (ArgAction::SetTrue | ArgAction::SetFalse, _) => Err("true or false"),
        (ArgAction::Count, toml::Value::Integer(n)) => Ok(vec![flag(n)]),
        (ArgAction::Count, _) => Err("an integer"),
        (ArgAction::Append, toml::Value::Array(items)) => items
            .iter()
            .map(|item| scalar(item).map(|text| flag(&text)))
            .collect::<Option<Vec<_>>>()
            .ok_or("a list of strings or numbers"),
        (ArgAction::Append, item) => scalar(item)
            .map(|text| vec![flag(&text)])
            .ok_or("a string, a number or a list of them"),
        (_, item) => scalar(item)
            .map(|text| vec![flag(&text)])
            .ok_or("a string or a number"),
    }
}

/// A single value as the command line would spell it. Floats are refused:
/// no flag takes fractions, and `1.5` must not silently become `1`.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Boolean(on) => Some(on.to_string()),
        _ => None,
    }
}

/// The parser's own words for a refused value, without clap's usage text.
/// The standard library's parsers do not say what they wanted, so for those
/// it is added.
fn reason(error: &clap::Error) -> String {
    if error.kind() == ErrorKind::ValueValidation {
        if let Some(source) = std::error::Error::source(error) {
            let expected = if source.is::<std::num::ParseIntError>() {
                "; expected a whole number"
            } else if source.is::<std::net::AddrParseError>() {
                "; expected an address and port like \"127.0.0.1:8000\""
            } else {
                ""
            };
            return format!("{source}{expected}");
        }
    }
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{Args, Command, FromArgMatches};

    use super::*;

    /// A stand-in for `ServeArgs` with one flag of every kind.
    #[derive(Debug, Args)]
    struct Flags {
        #[arg(long, default_value_t = 100)]
        queue: usize,
        #[arg(long, default_value = "30s", value_parser = slosh_core::settings::parse_duration)]
        poll_timeout: Duration,
        #[arg(long = "cors-origin", value_delimiter = ',')]
        cors_origins: Vec<String>,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    }

    /// Parses `argv` as the command line, then applies `text` as the file.
    fn load(argv: &[&str], text: &str) -> Result<Flags, ConfigError> {
        let command = Flags::augment_args(Command::new("serve").no_binary_name(true));
        let matches = command.try_get_matches_from(argv).unwrap();
        let mut flags = Flags::from_arg_matches(&matches).unwrap();
        apply_text(&mut flags, &matches, Path::new("test.toml"), text)?;
        Ok(flags)
    }

    #[test]
    fn every_long_flag_but_config_is_a_key_in_snake_case() {
        let names: Vec<String> = keys(&Flags::augment_args(Command::new("serve")))
            .into_iter()
            .map(|key| key.name)
            .collect();
        assert_eq!(names, ["queue", "poll_timeout", "cors_origin", "quiet"]);
    }

    #[test]
    fn the_file_fills_in_what_the_command_line_left_at_its_default() {
        let flags = load(&[], "queue = 4\npoll_timeout = \"500ms\"\nquiet = true").unwrap();
        assert_eq!(flags.queue, 4);
        assert_eq!(flags.poll_timeout, Duration::from_millis(500));
        assert!(flags.quiet);
    }

    #[test]
    fn durations_read_plain_seconds_in_the_file_as_on_the_command_line() {
        let flags = load(&[], "poll_timeout = 5").unwrap();
        assert_eq!(flags.poll_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_flag_beats_the_file_and_keeps_the_other_keys() {
        let flags = load(&["--queue", "7", "--quiet"], "queue = 4\npoll_timeout = 2").unwrap();
        assert_eq!(flags.queue, 7);
        assert_eq!(flags.poll_timeout, Duration::from_secs(2));
        assert!(flags.quiet, "an on/off flag survives a file key elsewhere");
    }

    #[test]
    fn a_flag_the_file_sets_off_after_the_command_line_set_it_on_stays_on() {
        assert!(load(&["--quiet"], "quiet = false").unwrap().quiet);
    }

    #[test]
    fn the_environment_beats_the_file() {
        /// Its own variable, so no other test sees it set.
        #[derive(Debug, Args)]
        struct FromEnv {
            #[arg(long, env = "SLOSH_TEST_CONFIG_QUEUE", default_value_t = 100)]
            queue: usize,
        }
        std::env::set_var("SLOSH_TEST_CONFIG_QUEUE", "9");
        let command = FromEnv::augment_args(Command::new("serve").no_binary_name(true));
        let matches = command.try_get_matches_from(Vec::<String>::new()).unwrap();
        let mut flags = FromEnv::from_arg_matches(&matches).unwrap();
        apply_text(&mut flags, &matches, Path::new("test.toml"), "queue = 4").unwrap();
        assert_eq!(flags.queue, 9);
    }

    #[test]
    fn a_list_key_takes_a_list_a_single_string_or_the_plural_spelling() {
        let list = load(
            &[],
            r#"cors_origin = ["https://a.example", "https://b.example"]"#,
        );
        assert_eq!(
            list.unwrap().cors_origins,
            ["https://a.example", "https://b.example"]
        );
        let one = load(&[], r#"cors_origins = "*""#).unwrap();
        assert_eq!(one.cors_origins, ["*"]);
        assert!(matches!(
            load(&[], "cors_origin = [\"a\"]\ncors_origins = [\"b\"]"),
            Err(ConfigError::Duplicate { .. })
        ));
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_known_ones() {
        let error = load(&[], "qeueu = 4").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("test.toml"), "{message}");
        assert!(message.contains("\"qeueu\""), "{message}");
        assert!(message.contains("queue, poll_timeout"), "{message}");
        assert!(matches!(
            load(&[], "config = \"other.toml\""),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(matches!(
            load(&[], "[server]\nqueue = 4"),
            Err(ConfigError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_naming_what_the_key_takes() {
        for text in [
            "queue = [1, 2]",
            "queue = 1.5",
            "queue = { a = 1 }",
            "quiet = \"yes\"",
        ] {
            let error = load(&[], text).unwrap_err();
            assert!(
                matches!(&error, ConfigError::WrongType { path, .. } if path == Path::new("test.toml")),
                "{text}: {error}"
            );
        }
        let message = load(&[], "queue = [1]").unwrap_err().to_string();
        assert!(
            message.contains("\"queue\" must be a string or a number (found: array)"),
            "{message}"
        );
    }

    #[test]
    fn a_value_the_flag_would_refuse_is_refused_with_the_parsers_reason() {
        let message = load(&[], "poll_timeout = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"poll_timeout\" = \"soon\""), "{message}");
        assert!(message.contains("invalid duration"), "{message}");
        assert!(message.contains("--poll-timeout"), "{message}");
        let message = load(&[], "queue = -1").unwrap_err().to_string();
        assert!(message.contains("expected a whole number"), "{message}");
    }

    #[test]
    fn a_bad_value_is_refused_even_where_a_flag_wins() {
        assert!(matches!(
            load(&["--queue", "7"], "queue = \"many\""),
            Err(ConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn text_that_is_not_toml_is_refused_naming_the_file() {
        let message = load(&[], "queue = ").unwrap_err().to_string();
        assert!(
            message.starts_with("test.toml is not valid TOML"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_is_refused_naming_it() {
        let command = Flags::augment_args(Command::new("serve").no_binary_name(true));
        let matches = command.try_get_matches_from(Vec::<String>::new()).unwrap();
        let mut flags = Flags::from_arg_matches(&matches).unwrap();
        let path = Path::new("/nonexistent/slosh.toml");
        let message = apply_file(&mut flags, &matches, path)
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/slosh.toml"), "{message}");
    }
}
