//! Layering of the configuration: defaults < file < environment (`DUCKTAIL__SECTION__KEY`) < flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ducktail_pipeline::settings::Settings;

/// `$XDG_DATA_HOME`, else `~/.local/share`.
pub fn data_home() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".local/share"))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// `$XDG_CONFIG_HOME/ducktail/config.toml`, else `~/.config/ducktail/config.toml`.
pub fn default_config_file() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".config"))
        .join("ducktail/config.toml")
}

/// Loads settings from defaults, the config file (explicit, or the default one if present) and
/// the environment, then validates them. Errors name the file and the key.
pub fn load(explicit_file: Option<&Path>) -> Result<Settings> {
    let defaults = config::Config::try_from(&Settings::default()).context("serializing default settings")?;
    let mut builder = config::Config::builder().add_source(defaults);
    let file = match explicit_file {
        Some(path) => {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist; pass an existing file to --config", path.display());
            }
            Some(path.to_owned())
        }
        None => Some(default_config_file()).filter(|path| path.is_file()),
    };
    if let Some(path) = &file {
        builder = builder.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("DUCKTAIL").prefix_separator("__").separator("__").try_parsing(true),
    );
    let origin = file.as_ref().map_or_else(|| "defaults and environment".to_owned(), |path| format!("config file {}", path.display()));
    let settings: Settings = builder
        .build()
        .and_then(|built| built.try_deserialize())
        .map_err(|error| anyhow::anyhow!("invalid configuration ({origin}): {error}"))?;
    settings.validate().map_err(|error| anyhow::anyhow!("invalid configuration ({origin}): {error}"))?;
    Ok(settings)
}

/// The OpenCode directory: flag, else config, else `$XDG_DATA_HOME/opencode`.
pub fn opencode_dir(flag: Option<&Path>, settings: &Settings) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| Some(settings.sources.opencode.path.clone()).filter(|path| !path.as_os_str().is_empty()))
        .unwrap_or_else(|| data_home().join("opencode"))
}

/// The database file: flag, else config, else `$XDG_DATA_HOME/ducktail/ducktail.duckdb`.
pub fn database_file(flag: Option<&Path>, settings: &Settings) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| Some(settings.database.path.clone()).filter(|path| !path.as_os_str().is_empty()))
        .unwrap_or_else(|| data_home().join("ducktail/ducktail.duckdb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_file_parses_and_default_toml_matches_the_defaults() {
        let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&config_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "toml") {
                let settings = load(Some(&path)).unwrap_or_else(|error| panic!("{}: {error:#}", path.display()));
                if path.file_name().is_some_and(|name| name == "default.toml") {
                    assert_eq!(settings, Settings::default(), "config/default.toml must state the built-in defaults");
                }
                seen += 1;
            }
        }
        assert!(seen >= 1);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[pipeline]\nmax_filez = 3\n").unwrap();
        let error = format!("{:#}", load(Some(&file)).unwrap_err());
        assert!(error.contains("max_filez"), "{error}");
        std::fs::write(&file, "[pipeline]\nmax_files = 0\n").unwrap();
        let error = format!("{:#}", load(Some(&file)).unwrap_err());
        assert!(error.contains("pipeline.max_files"), "{error}");
        std::fs::write(&file, "[pipeline]\non_delete = \"shred\"\n").unwrap();
        let error = format!("{:#}", load(Some(&file)).unwrap_err());
        assert!(error.contains("shred"), "{error}");
    }
}
