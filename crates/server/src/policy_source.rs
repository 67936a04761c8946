//! Reading a policy directory (`roles.toml` + `*.cedar`) into bundle sources.

use idmint_core::policy::SourceFile;
use std::path::Path;

/// Largest policy file accepted; a bundle is reviewed by people, so anything
/// bigger is a mistake (or an attack on the parser).
const MAX_FILE: u64 = 1024 * 1024;

pub fn read_policy_dir(dir: &Path) -> Result<Vec<SourceFile>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot read the policy directory: {e}", dir.display()))?;
    let mut sources = vec![];
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !(name.ends_with(".cedar") || name == "roles.toml") {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_FILE {
            return Err(format!("{}: larger than 1 MiB; split it", path.display()));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        sources.push(SourceFile { name, text });
    }
    if !sources.iter().any(|s| s.name == "roles.toml") {
        return Err(format!(
            "{}: no roles.toml in the policy directory",
            dir.display()
        ));
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sources)
}
