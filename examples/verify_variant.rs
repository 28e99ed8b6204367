//! Checking a variant against golden files — what a CUDA or PyTorch port does with igpt.
//!
//! 1. igpt writes the golden file of one kernel (`linear`: `y = x W + b`), its inputs drawn from
//!    Philox so any implementation can regenerate them.
//! 2. A "variant" — here a naive triple loop standing in for a GPU kernel — computes the output
//!    and the gradients from the golden's inputs and upstream gradient `dy`.
//! 3. `igpt::golden::verify` compares the two with the golden's tolerances and prints the table.
//!
//! Run with `cargo run --release --example verify_variant`.

use igpt::golden::{op_golden, verify, Tolerance};
use igpt::io::safetensors::SafeTensors;
use igpt::model::Precision;

/// The variant under test: `y = x W + b` and its gradients, with plain loops in f64.
fn naive_linear(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
    n: usize,
    k: usize,
    m: usize,
) -> [Vec<f32>; 4] {
    let (mut y, mut dx, mut dw, mut db) =
        (vec![0.0; n * m], vec![0.0; n * k], vec![0.0; k * m], vec![0.0; m]);
    for i in 0..n {
        for j in 0..m {
            let dot: f64 = (0..k).map(|p| f64::from(x[i * k + p]) * f64::from(w[p * m + j])).sum();
            y[i * m + j] = (dot + f64::from(b[j])) as f32;
            db[j] += dy[i * m + j];
        }
        for p in 0..k {
            dx[i * k + p] = (0..m)
                .map(|j| f64::from(dy[i * m + j]) * f64::from(w[p * m + j]))
                .sum::<f64>() as f32;
        }
    }
    for p in 0..k {
        for j in 0..m {
            dw[p * m + j] = (0..n)
                .map(|i| f64::from(x[i * k + p]) * f64::from(dy[i * m + j]))
                .sum::<f64>() as f32;
        }
    }
    [y, dx, dw, db]
}

fn main() -> igpt::Result<()> {
    // 1. The golden file (written to disk in real use: `igpt golden --op linear --shape 64,96,80`).
    let (n, k, m) = (64, 96, 80);
    let golden = op_golden("linear", &[n, k, m], 42, Precision::F32)?;

    // 2. The variant reads the inputs and the upstream gradient and computes its answers.
    let get = |name: &str| golden.get_f32(name).map(|(_, v)| v);
    let [y, dx, dw, db] = naive_linear(&get("x")?, &get("w")?, &get("b")?, &get("dy")?, n, k, m);
    let mut candidate = SafeTensors::new();
    for (name, shape, values) in [
        ("y", vec![n, m], y),
        ("grad.x", vec![n, k], dx),
        ("grad.w", vec![k, m], dw),
        ("grad.b", vec![m], db),
    ] {
        candidate.push_f32(name, &shape, &values)?;
    }
    // The inputs are the same bytes: copy them so the comparison covers every golden tensor.
    for name in ["x", "w", "b", "dy"] {
        candidate.push(name, golden.get(name).expect("input").clone())?;
    }

    // 3. Verify with the golden's recorded tolerance (SPEC §7).
    let tol = Tolerance::from_metadata(golden.get_metadata("tolerances"), "linear golden")?;
    let report = verify(&golden, &candidate, &tol);
    print!("{}", report.to_text());
    println!(
        "{}",
        if report.passed() {
            "the variant agrees with igpt"
        } else {
            "the variant disagrees with igpt"
        }
    );
    Ok(())
}
