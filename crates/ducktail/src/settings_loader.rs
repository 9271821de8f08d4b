//! Layering of the configuration: defaults < file < environment (`DUCKTAIL__SECTION__KEY`) < flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ducktail_pipeline::settings::Settings;

use crate::paths::PathResolver;

/// `$XDG_DATA_HOME`, else `~/.local/share`; absolute.
pub fn data_home(paths: &PathResolver) -> PathBuf {
    xdg_base("XDG_DATA_HOME", ".local/share", paths)
}

/// `$XDG_CONFIG_HOME/ducktail/config.toml`, else `~/.config/ducktail/config.toml`; absolute.
pub fn default_config_file(paths: &PathResolver) -> PathBuf {
    xdg_base("XDG_CONFIG_HOME", ".config", paths).join("ducktail/config.toml")
}

/// An XDG base directory: the variable when it holds an absolute path (the XDG spec says to
/// ignore a relative one), else `fallback` under the home directory.
fn xdg_base(variable: &str, fallback: &str, paths: &PathResolver) -> PathBuf {
    match std::env::var_os(variable).map(PathBuf::from) {
        Some(value) if value.is_absolute() => paths.resolve(&value),
        _ => paths.resolve(&Path::new("~").join(fallback)),
    }
}

/// Loads settings from defaults, the config file (explicit, or the default one if present) and
/// the environment, then validates them and makes their paths absolute (`~` and `$HOME`
/// expanded, relative ones taken against the working directory). Errors name the file and the
/// key.
pub fn load(explicit_file: Option<&Path>, paths: &PathResolver) -> Result<Settings> {
    let defaults = config::Config::try_from(&Settings::default()).context("serializing default settings")?;
    let mut builder = config::Config::builder().add_source(defaults);
    let file = match explicit_file {
        Some(path) => {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist; pass an existing file to --config", path.display());
            }
            Some(path.to_owned())
        }
        None => Some(default_config_file(paths)).filter(|path| path.is_file()),
    };
    if let Some(path) = &file {
        builder = builder.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml).required(true));
    }
    builder = builder.add_source(config::Environment::with_prefix("DUCKTAIL").prefix_separator("__").separator("__").try_parsing(true));
    let origin = file.as_ref().map_or_else(|| "defaults and environment".to_owned(), |path| format!("config file {}", path.display()));
    let mut settings: Settings =
        builder.build().and_then(|built| built.try_deserialize()).map_err(|error| anyhow::anyhow!("invalid configuration ({origin}): {error}"))?;
    settings.validate().map_err(|error| anyhow::anyhow!("invalid configuration ({origin}): {error}"))?;
    for path in [
        &mut settings.sources.opencode.path,
        &mut settings.database.path,
        &mut settings.sources.spans.path,
        &mut settings.pricing.file,
        &mut settings.export.parquet.dir,
    ] {
        paths.resolve_in_place(path);
    }
    for source in [&mut settings.sources.claude_code, &mut settings.sources.codex] {
        source.paths.iter_mut().for_each(|path| paths.resolve_in_place(path));
        source.explicit = !source.paths.is_empty();
    }
    Ok(settings)
}

/// Fills in the transcript folders: flags (absolute already) replace the config's; with
/// neither, each agent's default folders, which may not exist (then they are skipped).
pub fn transcript_folders(settings: &mut Settings, claude_flags: &[PathBuf], codex_flags: &[PathBuf], paths: &PathResolver) {
    let defaults = |variable: &str, fallbacks: &[&str], split: bool| -> Vec<PathBuf> {
        match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => {
                let listed: Vec<&str> = if split { value.split(',').collect() } else { vec![value.as_str()] };
                listed.into_iter().map(str::trim).filter(|folder| !folder.is_empty()).map(|folder| paths.resolve(Path::new(folder))).collect()
            }
            _ => fallbacks.iter().map(|fallback| paths.resolve(&Path::new("~").join(fallback))).collect(),
        }
    };
    for (source, flags, variable, fallbacks, split) in [
        (&mut settings.sources.claude_code, claude_flags, "CLAUDE_CONFIG_DIR", &[".claude", ".config/claude"][..], true),
        (&mut settings.sources.codex, codex_flags, "CODEX_HOME", &[".codex"][..], false),
    ] {
        if !flags.is_empty() {
            source.paths = flags.to_vec();
            source.explicit = true;
            source.enabled = true;
        } else if source.paths.is_empty() {
            source.paths = defaults(variable, fallbacks, split);
            source.explicit = false;
        }
    }
}

/// The OpenCode directory: flag, else config, else `$XDG_DATA_HOME/opencode`. The flag and the
/// settings are absolute already ([`crate::cli::Cli::resolve_paths`], [`load`]).
pub fn opencode_dir(flag: Option<&Path>, settings: &Settings, paths: &PathResolver) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| Some(settings.sources.opencode.path.clone()).filter(|path| !path.as_os_str().is_empty()))
        .unwrap_or_else(|| data_home(paths).join("opencode"))
}

/// The database file: flag, else config, else `$XDG_DATA_HOME/ducktail/ducktail.duckdb`.
pub fn database_file(flag: Option<&Path>, settings: &Settings, paths: &PathResolver) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| Some(settings.database.path.clone()).filter(|path| !path.as_os_str().is_empty()))
        .unwrap_or_else(|| data_home(paths).join("ducktail/ducktail.duckdb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> PathResolver {
        PathResolver::new(PathBuf::from("/work/dir"), Some(PathBuf::from("/home/someone")))
    }

    #[test]
    fn every_shipped_config_file_parses_and_default_toml_matches_the_defaults() {
        let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&config_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "toml") {
                let settings = load(Some(&path), &resolver()).unwrap_or_else(|error| panic!("{}: {error:#}", path.display()));
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
        let error = format!("{:#}", load(Some(&file), &resolver()).unwrap_err());
        assert!(error.contains("max_filez"), "{error}");
        std::fs::write(&file, "[pipeline]\nmax_files = 0\n").unwrap();
        let error = format!("{:#}", load(Some(&file), &resolver()).unwrap_err());
        assert!(error.contains("pipeline.max_files"), "{error}");
        std::fs::write(&file, "[pipeline]\non_delete = \"shred\"\n").unwrap();
        let error = format!("{:#}", load(Some(&file), &resolver()).unwrap_err());
        assert!(error.contains("shred"), "{error}");
    }

    #[test]
    fn paths_in_a_config_file_expand_home_and_are_taken_against_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paths.toml");
        std::fs::write(&file, "[sources.opencode]\npath = \"~/oc\"\n[database]\npath = \"data/d.duckdb\"\n[sources.spans]\npath = \"$HOME/spans/\"\n").unwrap();
        let settings = load(Some(&file), &resolver()).unwrap();
        assert_eq!(settings.sources.opencode.path, Path::new("/home/someone/oc"));
        assert_eq!(settings.database.path, Path::new("/work/dir/data/d.duckdb"));
        assert_eq!(settings.sources.spans.path, Path::new("/home/someone/spans"));
    }
}
