//! `igpt verify --suite DIR --candidates DIR2`: every golden a suite's `manifest.json` lists,
//! against the candidate file of the same name in `DIR2`, in one table.
//!
//! Each file is compared exactly as `igpt verify --reference DIR/F --candidate DIR2/F` would
//! compare it (SPEC §13.3), under the tolerance the caller decides for it (the file's own
//! class unless overridden). A file passes when every reference tensor passes. A candidate
//! file that does not exist is **missing** (a failure), as is one that cannot be read; files in
//! `DIR2` the manifest does not list are ignored (a port may write more).

use super::suite::MANIFEST;
use super::tolerance::Tolerance;
use super::verify::{number, verify, Report, TensorReport, Verdict};
use crate::error::{Error, Result};
use crate::io::json::{read_json, Json};
use crate::io::safetensors::SafeTensors;
use std::path::Path;

/// What became of one file of the suite.
#[derive(Clone, Debug)]
pub enum FileOutcome {
    /// Both files were read and compared tensor by tensor.
    Compared(Report),
    /// The candidate directory has no file of this name.
    Missing,
    /// A file could not be read, or its tolerance metadata is malformed: why.
    Unreadable(String),
}

/// One row of the suite's table.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub file: String,
    pub outcome: FileOutcome,
}

/// At most this many failing tensors are named on a file's line (the file's own report, from
/// `igpt verify --reference … --candidate …`, lists them all).
const NAMED_FAILURES: usize = 3;

impl FileReport {
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, FileOutcome::Compared(r) if r.passed())
    }

    /// The compared tensor that used the largest share of its allowance.
    pub fn worst(&self) -> Option<&TensorReport> {
        let FileOutcome::Compared(report) = &self.outcome else { return None };
        let measured = report
            .tensors
            .iter()
            .filter(|t| matches!(t.verdict, Verdict::Pass | Verdict::Fail) && t.reason.is_none());
        measured.max_by(|a, b| a.used.total_cmp(&b.used))
    }

    /// `(passed, compared)` reference tensors.
    fn tensor_counts(&self) -> Option<(usize, usize)> {
        let FileOutcome::Compared(r) = &self.outcome else { return None };
        Some((r.count(Verdict::Pass), r.tensors.len() - r.count(Verdict::Extra)))
    }

    fn result_name(&self) -> &'static str {
        match self.outcome {
            _ if self.passed() => "pass",
            FileOutcome::Missing => "missing",
            _ => "fail",
        }
    }

    /// Why the file failed: the failing tensors (the first few, each with its reason), or why
    /// it was not compared. `None` if it passed.
    pub fn failure(&self) -> Option<String> {
        let report = match &self.outcome {
            _ if self.passed() => return None,
            FileOutcome::Missing => return Some("missing from the candidates".into()),
            FileOutcome::Unreadable(why) => return Some(why.clone()),
            FileOutcome::Compared(r) => r,
        };
        let failing: Vec<&TensorReport> = report
            .tensors
            .iter()
            .filter(|t| matches!(t.verdict, Verdict::Fail | Verdict::Missing))
            .collect();
        let mut parts: Vec<String> = failing
            .iter()
            .take(NAMED_FAILURES)
            .map(|t| format!("{} ({})", t.name, t.failure()))
            .collect();
        if failing.len() > NAMED_FAILURES {
            parts.push(format!("and {} more", failing.len() - NAMED_FAILURES));
        }
        Some(parts.join("; "))
    }
}

/// The comparison of a whole candidate directory with a suite.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    pub reference: String,
    pub candidates: String,
    pub files: Vec<FileReport>,
}

impl SuiteReport {
    fn count(&self, result: &str) -> usize {
        self.files.iter().filter(|f| f.result_name() == result).count()
    }

    /// Files that failed, missing ones included.
    pub fn failed(&self) -> usize {
        self.files.len() - self.count("pass")
    }

    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// The table: one file per line (its tensors passed of compared, the worst share of
    /// allowance used and by which tensor, the result), then a summary line.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "suite {} against {}: each file held to the tolerance it records (SPEC §7.1) unless overridden\n",
            self.reference, self.candidates
        );
        let width = self.files.iter().map(|f| f.file.len()).max().unwrap_or(0).max(4);
        let names = self.files.iter().filter_map(|f| f.worst().map(|t| t.name.len()));
        let w = names.max().unwrap_or(0).max(12);
        s.push_str(&format!(
            "{:<width$} {:>9} {:>9}  {:<w$} result\n",
            "file", "tensors", "used", "worst tensor"
        ));
        for f in &self.files {
            let tensors = f.tensor_counts().map_or("-".into(), |(p, n)| format!("{p}/{n}"));
            let (used, worst) = f.worst().map_or(("-".into(), "-"), |t| (percent(t.used), &t.name));
            let result = f.failure().map_or("ok".into(), |why| format!("FAIL: {why}"));
            s.push_str(&format!(
                "{:<width$} {tensors:>9} {used:>9}  {worst:<w$} {result}\n",
                f.file
            ));
        }
        s.push_str(&format!(
            "{} files: {} passed, {} failed ({} missing)\n",
            self.files.len(),
            self.count("pass"),
            self.failed(),
            self.count("missing")
        ));
        s
    }

    /// One JSON document on one line (SPEC §13.3): the directories, the verdict, the counts
    /// and per file its result, worst share used, reason and single-file report.
    pub fn to_json(&self) -> Result<String> {
        let count = |r: &str| Json::from(self.count(r));
        let files = self.files.iter().map(|f| self.file_json(f)).collect();
        Json::Object(vec![
            ("reference".into(), self.reference.as_str().into()),
            ("candidates".into(), self.candidates.as_str().into()),
            ("passed".into(), self.passed().into()),
            (
                "counts".into(),
                Json::Object(vec![
                    ("pass".into(), count("pass")),
                    ("fail".into(), count("fail")),
                    ("missing".into(), count("missing")),
                ]),
            ),
            ("files".into(), Json::Array(files)),
        ])
        .to_compact()
    }

    fn file_json(&self, f: &FileReport) -> Json {
        let worst = f.worst();
        let report = match &f.outcome {
            FileOutcome::Compared(r) => {
                let (reference, candidate) =
                    (self.path(&self.reference, f), self.path(&self.candidates, f));
                r.to_json_value(&reference, &candidate)
            }
            _ => Json::Null,
        };
        Json::Object(vec![
            ("file".into(), f.file.as_str().into()),
            ("result".into(), f.result_name().into()),
            ("used".into(), worst.map_or(Json::Null, |t| number(t.used))),
            ("worst_tensor".into(), worst.map_or(Json::Null, |t| t.name.as_str().into())),
            ("reason".into(), f.failure().map_or(Json::Null, Json::from)),
            ("report".into(), report),
        ])
    }

    fn path(&self, dir: &str, f: &FileReport) -> String {
        Path::new(dir).join(&f.file).display().to_string()
    }
}

/// A share as a percentage, in at most 9 characters (a wild candidate can use 10⁸ %).
fn percent(share: f64) -> String {
    if 100.0 * share < 1e5 {
        format!("{:.1}%", 100.0 * share)
    } else {
        format!("{:.1e}%", 100.0 * share)
    }
}

/// The golden files `manifest.json` in `dir` lists, in its order. A name must be a plain file
/// name: a manifest cannot point outside its directory.
pub fn manifest_files(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(MANIFEST);
    let origin = path.display().to_string();
    let json = read_json(&path)?;
    let files = json
        .get("files")
        .and_then(Json::as_array)
        .ok_or_else(|| Error::format(&origin, "no \"files\" array"))?;
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = f.get("file").and_then(Json::as_str).unwrap_or_default();
            let plain = Path::new(name).file_name().is_some_and(|n| n == name);
            if plain {
                Ok(name.to_string())
            } else {
                Err(Error::format(&origin, format!("files[{i}].file {name:?} is not a file name")))
            }
        })
        .collect()
}

/// Compares every file the suite in `dir` lists with the same-named file in `candidates`,
/// each under `tolerance(reference, path)`. Errors only if the manifest cannot be read; a
/// file that cannot be is a failed row.
pub fn verify_suite(
    dir: &Path,
    candidates: &Path,
    tolerance: &dyn Fn(&SafeTensors, &str) -> Result<Tolerance>,
) -> Result<SuiteReport> {
    let files = manifest_files(dir)?
        .into_iter()
        .map(|file| {
            let outcome = compare_file(&dir.join(&file), &candidates.join(&file), tolerance);
            FileReport { file, outcome }
        })
        .collect();
    Ok(SuiteReport {
        reference: dir.display().to_string(),
        candidates: candidates.display().to_string(),
        files,
    })
}

fn compare_file(
    reference: &Path,
    candidate: &Path,
    tolerance: &dyn Fn(&SafeTensors, &str) -> Result<Tolerance>,
) -> FileOutcome {
    if !candidate.exists() {
        return FileOutcome::Missing;
    }
    let compared = || -> Result<Report> {
        let golden = SafeTensors::read(reference)?;
        let tol = tolerance(&golden, &reference.display().to_string())?;
        Ok(verify(&golden, &SafeTensors::read(candidate)?, &tol))
    };
    compared().map_or_else(|e| FileOutcome::Unreadable(e.to_string()), FileOutcome::Compared)
}
