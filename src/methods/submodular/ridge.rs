//! Refit: after selection, the layer that reads the kept units is refitted by ridge least
//! squares so that it reproduces the wide model's outputs.

/// Ridge least squares `[x, 1] @ [w; b] ~ target` (`x`: `rows x d`, `target`: `rows x out`);
/// `ridge` is relative to the mean diagonal of the Gram matrix.
pub(super) fn least_squares(
    x: &[f32],
    target: &[f32],
    rows: usize,
    d: usize,
    out: usize,
    ridge: f64,
) -> (Vec<f32>, Vec<f32>) {
    let p = d + 1;
    let design = |r: usize, i: usize| if i < d { x[r * d + i] as f64 } else { 1.0 };
    let mut gram = vec![0.0; p * p];
    let mut rhs = vec![0.0; p * out];
    for r in 0..rows {
        for i in 0..p {
            let a = design(r, i);
            for j in 0..p {
                gram[i * p + j] += a * design(r, j);
            }
            for o in 0..out {
                rhs[i * out + o] += a * target[r * out + o] as f64;
            }
        }
    }
    let mean_diagonal = (0..p).map(|i| gram[i * p + i]).sum::<f64>() / p as f64;
    let solution = ridge_solve(&gram, &rhs, p, out, ridge * mean_diagonal.max(1e-12));
    (
        solution[..d * out].iter().map(|&v| v as f32).collect(),
        solution[d * out..].iter().map(|&v| v as f32).collect(),
    )
}

/// Solves `(A + lambda I) x = b` for a symmetric positive semi-definite `A` (`n x n`) with
/// several right-hand sides (`b` is `n x c`), by Cholesky.
fn ridge_solve(a: &[f64], b: &[f64], n: usize, c: usize, lambda: f64) -> Vec<f64> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j] + if i == j { lambda } else { 0.0 };
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = if i == j {
                sum.max(1e-12).sqrt()
            } else {
                sum / l[j * n + j]
            };
        }
    }
    let mut x = b.to_vec();
    for col in 0..c {
        for i in 0..n {
            let mut sum = x[i * c + col];
            for k in 0..i {
                sum -= l[i * n + k] * x[k * c + col];
            }
            x[i * c + col] = sum / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut sum = x[i * c + col];
            for k in i + 1..n {
                sum -= l[k * n + i] * x[k * c + col];
            }
            x[i * c + col] = sum / l[i * n + i];
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_solve_recovers_a_linear_map() {
        // A = X^T X for a well-conditioned X, b = A w.
        let (n, c) = (4, 2);
        let x: Vec<f64> = (0..8 * n).map(|i| ((i * 7 % 11) as f64) - 5.0).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..8).map(|r| x[r * n + i] * x[r * n + j]).sum();
            }
        }
        let w = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0];
        let b: Vec<f64> = (0..n)
            .flat_map(|i| (0..c).map(move |o| (i, o)))
            .map(|(i, o)| (0..n).map(|k| a[i * n + k] * w[k * c + o]).sum())
            .collect();
        let solved = ridge_solve(&a, &b, n, c, 0.0);
        for (s, t) in solved.iter().zip(w) {
            assert!((s - t).abs() < 1e-6, "{solved:?}");
        }
    }
}
