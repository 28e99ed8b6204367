//! `igpt verify`: a candidate's tensors against a golden's, under the policy of
//! [`super::tolerance`], and the report a person or a CI harness reads.
//!
//! Every tensor of the reference is compared with the candidate's tensor of the same name
//! (reference tensors named `slack.NAME` are not compared: they widen `NAME`'s allowance).
//! Per tensor the report gives the largest `|a − b|`, the element that uses the largest share
//! of its allowance (`|a − b| / allowance`, over 1 means it fails), that element's allowance,
//! how many elements are outside, and non-finite candidate elements counted as NaN and ±inf
//! (they fail; the numeric columns describe the finite elements). A tensor the candidate lacks
//! is `missing` (a failure); a candidate tensor the reference lacks is `extra` (listed, not
//! compared, not a failure).

use super::tolerance::{Tolerance, SLACK_PREFIX};
use crate::error::Result;
use crate::io::json::Json;
use crate::io::safetensors::{Dtype, SafeTensors, TensorView};

/// What became of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// In the reference, not in the candidate (a failure).
    Missing,
    /// In the candidate, not in the reference (reported, not compared).
    Extra,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Missing => "missing",
            Verdict::Extra => "extra",
        }
    }
}

/// The comparison of one tensor.
#[derive(Clone, Debug)]
pub struct TensorReport {
    pub name: String,
    /// The reference's shape (the candidate's for an extra tensor).
    pub shape: Vec<usize>,
    pub verdict: Verdict,
    /// Largest `|a − b|` over the finite candidate elements.
    pub max_abs: f64,
    /// Multi-index of the element with the largest share of its allowance used.
    pub worst: Vec<usize>,
    /// That element's allowance: `atol + rtol·max_j |b_j| + slack`.
    pub allowance: f64,
    /// Its share used, `|a − b| / allowance` (above 1 fails; 0/0 counts as 0).
    pub used: f64,
    /// Elements outside their allowance, NaN elements and infinite elements of the candidate.
    pub outside: usize,
    pub nan: usize,
    pub inf: usize,
    /// Why a tensor could not be compared (shape, dtype), if so.
    pub reason: Option<String>,
}

impl TensorReport {
    fn new(name: &str, shape: &[usize], verdict: Verdict) -> TensorReport {
        TensorReport {
            name: name.into(),
            shape: shape.to_vec(),
            verdict,
            max_abs: 0.0,
            worst: Vec::new(),
            allowance: 0.0,
            used: 0.0,
            outside: 0,
            nan: 0,
            inf: 0,
            reason: None,
        }
    }

    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The last column of the table: `ok`, or why the tensor failed.
    fn result_text(&self) -> String {
        match self.verdict {
            Verdict::Pass => "ok".into(),
            Verdict::Extra => "extra: in the candidate only (not compared)".into(),
            Verdict::Missing | Verdict::Fail => format!("FAIL: {}", self.failure()),
        }
    }

    /// Why a failed or missing tensor failed (empty for the others).
    pub fn failure(&self) -> String {
        match self.verdict {
            Verdict::Pass | Verdict::Extra => String::new(),
            Verdict::Missing => "missing from the candidate".into(),
            Verdict::Fail => {
                let mut why = Vec::new();
                if let Some(r) = &self.reason {
                    why.push(r.clone());
                }
                if self.nan + self.inf > 0 {
                    why.push(format!("{} NaN and {} inf in the candidate", self.nan, self.inf));
                }
                if self.outside > 0 {
                    why.push(format!(
                        "{} of {} elements outside tolerance",
                        self.outside,
                        self.elements()
                    ));
                }
                why.join("; ")
            }
        }
    }
}

/// The comparison of a whole candidate with a golden.
#[derive(Clone, Debug)]
pub struct Report {
    pub tolerance: Tolerance,
    /// Reference tensors in file order, then the candidate's extra tensors.
    pub tensors: Vec<TensorReport>,
}

impl Report {
    pub fn count(&self, v: Verdict) -> usize {
        self.tensors.iter().filter(|t| t.verdict == v).count()
    }

    /// Tensors that failed, missing ones included.
    pub fn failed(&self) -> usize {
        self.count(Verdict::Fail) + self.count(Verdict::Missing)
    }

    /// Whether every reference tensor passed.
    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    fn summary(&self) -> String {
        format!(
            "{} tensors compared, {} passed, {} failed ({} missing); {} extra in the candidate",
            self.tensors.len() - self.count(Verdict::Extra),
            self.count(Verdict::Pass),
            self.failed(),
            self.count(Verdict::Missing),
            self.count(Verdict::Extra)
        )
    }

    /// The table: one tensor per line, then a summary line.
    pub fn to_text(&self) -> String {
        let t = self.tolerance;
        let mut s =
            format!("tolerance per element: {:e} + {:e}·max|ref| + slack\n", t.atol, t.rtol);
        s.push_str(&format!(
            "{:<52} {:>16} {:>11} {:>11} {:>8} {:>16}  result\n",
            "tensor", "shape", "max |a-b|", "tolerance", "used", "worst at"
        ));
        for r in &self.tensors {
            let shape = format!("{:?}", r.shape);
            if matches!(r.verdict, Verdict::Missing | Verdict::Extra) {
                s.push_str(&format!("{:<52} {shape:>16}  {}\n", r.name, r.result_text()));
                continue;
            }
            let worst = format!("{:?}", r.worst);
            s.push_str(&format!(
                "{:<52} {shape:>16} {:>11.3e} {:>11.3e} {:>7.1}% {worst:>16}  {}\n",
                r.name,
                r.max_abs,
                r.allowance,
                100.0 * r.used,
                r.result_text()
            ));
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }

    /// One JSON document on one line (SPEC §13.3): the files, the verdict, the tolerance, the
    /// counts and every tensor.
    pub fn to_json(&self, reference: &str, candidate: &str) -> Result<String> {
        self.to_json_value(reference, candidate).to_compact()
    }

    /// The document of [`Report::to_json`] as a value (a suite's report embeds one per file).
    pub fn to_json_value(&self, reference: &str, candidate: &str) -> Json {
        let t = self.tolerance;
        let count = |v: Verdict| Json::from(self.count(v));
        Json::Object(vec![
            ("reference".into(), reference.into()),
            ("candidate".into(), candidate.into()),
            ("passed".into(), self.passed().into()),
            (
                "tolerance".into(),
                Json::Object(vec![("rtol".into(), t.rtol.into()), ("atol".into(), t.atol.into())]),
            ),
            (
                "counts".into(),
                Json::Object(vec![
                    ("pass".into(), count(Verdict::Pass)),
                    ("fail".into(), count(Verdict::Fail)),
                    ("missing".into(), count(Verdict::Missing)),
                    ("extra".into(), count(Verdict::Extra)),
                ]),
            ),
            ("tensors".into(), Json::Array(self.tensors.iter().map(tensor_json).collect())),
        ])
    }
}

/// A finite number, or `null` (JSON has no NaN or infinity).
pub(super) fn number(x: f64) -> Json {
    if x.is_finite() {
        x.into()
    } else {
        Json::Null
    }
}

/// A shape or multi-index as a JSON array.
pub(super) fn dims(v: &[usize]) -> Json {
    Json::Array(v.iter().map(|&x| x.into()).collect())
}

fn tensor_json(r: &TensorReport) -> Json {
    Json::Object(vec![
        ("name".into(), r.name.as_str().into()),
        ("shape".into(), dims(&r.shape)),
        ("result".into(), r.verdict.name().into()),
        ("max_abs".into(), number(r.max_abs)),
        ("tolerance".into(), number(r.allowance)),
        ("used".into(), number(r.used)),
        ("worst".into(), dims(&r.worst)),
        ("outside".into(), r.outside.into()),
        ("nan".into(), r.nan.into()),
        ("inf".into(), r.inf.into()),
        ("reason".into(), r.reason.clone().map_or(Json::Null, Json::from)),
    ])
}

/// Compares every tensor of `reference` with the same-named tensor of `candidate` under `tol`
/// (the reference's `slack.NAME` tensors added to `NAME`'s allowance), and lists the
/// candidate's tensors the reference lacks.
pub fn verify(reference: &SafeTensors, candidate: &SafeTensors, tol: &Tolerance) -> Report {
    let compared = reference.tensors.iter().filter(|(name, _)| !name.starts_with(SLACK_PREFIX));
    let mut tensors: Vec<TensorReport> =
        compared.map(|(name, view)| compare(name, view, reference, candidate, tol)).collect();
    for (name, view) in &candidate.tensors {
        if reference.get(name).is_none() {
            tensors.push(TensorReport::new(name, &view.shape, Verdict::Extra));
        }
    }
    Report { tolerance: *tol, tensors }
}

/// Values of a tensor as f64 (floats and integers alike), or `None` for other dtypes.
fn values_f64(view: &TensorView) -> Option<Vec<f64>> {
    match view.dtype {
        Dtype::I64 | Dtype::I32 => view.to_i64().map(|v| v.iter().map(|&x| x as f64).collect()),
        Dtype::U8 => Some(view.data.iter().map(|&x| f64::from(x)).collect()),
        _ => view.to_f64(),
    }
}

fn is_integer(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::I64 | Dtype::I32 | Dtype::U8)
}

fn compare(
    name: &str,
    view: &TensorView,
    reference: &SafeTensors,
    candidate: &SafeTensors,
    tol: &Tolerance,
) -> TensorReport {
    let mut r = TensorReport::new(name, &view.shape, Verdict::Fail);
    let Some(cand) = candidate.get(name) else {
        r.verdict = Verdict::Missing;
        return r;
    };
    if cand.shape != view.shape {
        r.reason = Some(format!("shape {:?} in the candidate", cand.shape));
        return r;
    }
    let (Some(b), Some(a)) = (values_f64(view), values_f64(cand)) else {
        r.reason = Some(format!("dtype {} cannot be compared", cand.dtype.name()));
        return r;
    };
    let slack = match slack_of(name, b.len(), reference) {
        Ok(s) => s,
        Err(why) => {
            r.reason = Some(why);
            return r;
        }
    };
    // Integers (ids, labels, tokens) must be equal.
    let tol = if is_integer(view.dtype) { Tolerance { rtol: 0.0, atol: 0.0 } } else { *tol };
    measure(&mut r, &a, &b, &slack, &tol);
    if r.reason.is_none() && r.outside == 0 && r.nan + r.inf == 0 {
        r.verdict = Verdict::Pass;
    }
    r
}

/// The reference's `slack.NAME` for tensor `NAME` of `n` elements (zeros if it has none).
fn slack_of(
    name: &str,
    n: usize,
    reference: &SafeTensors,
) -> std::result::Result<Vec<f64>, String> {
    let slack_name = format!("{SLACK_PREFIX}{name}");
    let Some(view) = reference.get(&slack_name) else { return Ok(vec![0.0; n]) };
    match view.to_f64() {
        Some(s) if s.len() == n => Ok(s),
        _ => Err(format!("the reference's {slack_name} does not fit the tensor")),
    }
}

/// Fills the numeric fields of `r`: every element of candidate `a` against reference `b`.
fn measure(r: &mut TensorReport, a: &[f64], b: &[f64], slack: &[f64], tol: &Tolerance) {
    let scale = Tolerance::scale(b);
    let mut worst: Option<usize> = None;
    for (i, ((&x, &y), &s)) in a.iter().zip(b).zip(slack).enumerate() {
        if x.is_nan() {
            r.nan += 1;
            continue;
        }
        if x.is_infinite() {
            r.inf += 1;
            continue;
        }
        let diff = (x - y).abs();
        let allowance = tol.allowance(scale) + s;
        // 0/0 (an exact match under a zero allowance) uses nothing.
        let used = if diff == 0.0 { 0.0 } else { diff / allowance };
        r.max_abs = r.max_abs.max(diff);
        if diff > allowance {
            r.outside += 1;
        }
        if worst.is_none() || used > r.used {
            (r.used, r.allowance, worst) = (used, allowance, Some(i));
        }
    }
    let worst_i = worst.unwrap_or(0);
    r.worst = unravel(worst_i, &r.shape);
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &s) in shape.iter().enumerate().rev() {
        if s > 0 {
            idx[k] = i % s;
            i /= s;
        }
    }
    idx
}
