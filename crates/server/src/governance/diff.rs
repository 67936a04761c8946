//! What a draft changes: a unified diff per source file and a role-level
//! summary, both against a base bundle's sources.

use idmint_core::policy::SourceFile;
use idmint_core::Role;
use idmint_proto::governance::{FileDiff, RoleChanges};
use std::collections::BTreeMap;

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;
/// Above this many line pairs the LCS table would be too big; such a file
/// is shown as wholly replaced (policy files are reviewed by people, so this
/// is far beyond any real one).
const MAX_LCS_CELLS: usize = 4_000_000;

/// Unified diffs of every file that differs between `base` and `draft`
/// (added and removed files included), ordered by file name.
pub fn file_diffs(base: &[SourceFile], draft: &[SourceFile]) -> Vec<FileDiff> {
    let mut names: Vec<&str> = base.iter().chain(draft).map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let text_of = |files: &[SourceFile], name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.text.clone())
    };
    names
        .into_iter()
        .filter_map(|name| {
            let old = text_of(base, name);
            let new = text_of(draft, name);
            if old == new {
                return None;
            }
            Some(FileDiff {
                name: name.to_string(),
                unified: unified(
                    name,
                    old.as_deref().unwrap_or(""),
                    new.as_deref().unwrap_or(""),
                ),
            })
        })
        .collect()
}

/// Roles added, removed and changed (any field, labels included).
pub fn role_changes(base: &BTreeMap<String, Role>, draft: &BTreeMap<String, Role>) -> RoleChanges {
    RoleChanges {
        added: draft
            .keys()
            .filter(|k| !base.contains_key(*k))
            .cloned()
            .collect(),
        removed: base
            .keys()
            .filter(|k| !draft.contains_key(*k))
            .cloned()
            .collect(),
        changed: draft
            .iter()
            .filter(|(k, r)| base.get(*k).is_some_and(|old| old != *r))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// Labels of every role a change touches, in its old and its new form:
/// moving a role *out of* `env=prod` needs the prod approval count too.
pub fn touched_labels<'a>(
    changes: &RoleChanges,
    base: &'a BTreeMap<String, Role>,
    draft: &'a BTreeMap<String, Role>,
) -> Vec<&'a BTreeMap<String, String>> {
    changes
        .added
        .iter()
        .chain(&changes.removed)
        .chain(&changes.changed)
        .flat_map(|name| [base.get(name), draft.get(name)])
        .flatten()
        .map(|r| &r.labels)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Del,
    Add,
}

/// Edit script turning `old` into `new` (longest common subsequence).
fn edit_script(old: &[&str], new: &[&str]) -> Vec<(Op, usize)> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > MAX_LCS_CELLS {
        let mut ops: Vec<(Op, usize)> = (0..n).map(|i| (Op::Del, i)).collect();
        ops.extend((0..m).map(|j| (Op::Add, j)));
        return ops;
    }
    // lcs[i][j] = LCS length of old[i..] and new[j..], row-major.
    let width = m + 1;
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if old.get(i) == new.get(j) {
                lcs.get((i + 1) * width + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = lcs.get((i + 1) * width + j).copied().unwrap_or(0);
                let right = lcs.get(i * width + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i * width + j) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && old.get(i) == new.get(j) {
            ops.push((Op::Keep, i));
            i += 1;
            j += 1;
        } else if i < n && (j == m || at(i + 1, j) >= at(i, j + 1)) {
            // Deletions first, as `diff -u` shows a replaced line.
            ops.push((Op::Del, i));
            i += 1;
        } else {
            ops.push((Op::Add, j));
            j += 1;
        }
    }
    ops
}

/// `diff -u`-style text for one file.
pub fn unified(name: &str, old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let ops = edit_script(&old_lines, &new_lines);
    let mut out = format!("--- active/{name}\n+++ draft/{name}\n");
    // Positions (in `ops`) of changes, grouped into hunks whose gaps are
    // at most 2 * CONTEXT unchanged lines.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != Op::Keep)
        .map(|(k, _)| k)
        .collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        match hunks.last_mut() {
            Some((_, end)) if k <= *end + 2 * CONTEXT + 1 => *end = k,
            _ => hunks.push((k, k)),
        }
    }
    for (first, last) in hunks {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(ops.len());
        let slice = ops.get(start..end).unwrap_or(&[]);
        // Line numbers (1-based) where the hunk starts in each file.
        let before = ops.get(..start).unwrap_or(&[]);
        let old_start = before.iter().filter(|(op, _)| *op != Op::Add).count() + 1;
        let new_start = before.iter().filter(|(op, _)| *op != Op::Del).count() + 1;
        let old_len = slice.iter().filter(|(op, _)| *op != Op::Add).count();
        let new_len = slice.iter().filter(|(op, _)| *op != Op::Del).count();
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            if old_len == 0 {
                old_start - 1
            } else {
                old_start
            },
            if new_len == 0 {
                new_start - 1
            } else {
                new_start
            },
        ));
        for (op, idx) in slice {
            let (sign, line) = match op {
                Op::Keep => (' ', old_lines.get(*idx)),
                Op::Del => ('-', old_lines.get(*idx)),
                Op::Add => ('+', new_lines.get(*idx)),
            };
            out.push(sign);
            out.push_str(line.copied().unwrap_or(""));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_has_hunks_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
        let d = unified("x.cedar", old, new);
        assert_eq!(
            d,
            "--- active/x.cedar\n+++ draft/x.cedar\n@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n"
        );
        let far = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let far_new = "x\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\ny\n";
        let d = unified("f", far, far_new);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,4 +1,4 @@\n-1\n+x\n"), "{d}");
        assert!(
            d.contains("@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+y\n"),
            "{d}"
        );
    }

    #[test]
    fn added_and_removed_files_are_listed() {
        let base = vec![SourceFile {
            name: "old.cedar".into(),
            text: "permit (principal, action, resource);\n".into(),
        }];
        let draft = vec![SourceFile {
            name: "new.cedar".into(),
            text: "forbid (principal, action, resource);\n".into(),
        }];
        let diffs = file_diffs(&base, &draft);
        let names: Vec<&str> = diffs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["new.cedar", "old.cedar"]);
        assert!(diffs[0].unified.contains("@@ -0,0 +1,1 @@\n+forbid"));
        assert!(diffs[1].unified.contains("@@ -1,1 +0,0 @@\n-permit"));
        assert!(file_diffs(&base, &base).is_empty());
    }
}
