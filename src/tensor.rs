//! Tensors: contiguous row-major arrays with a shape, and the matrix multiply under everything.
//!
//! A [`Tensor<T>`] owns `Π shape` elements laid out row-major (the last index varies fastest),
//! exactly like a contiguous PyTorch tensor or a C array, so a GPU variant can copy its data
//! as-is. `T` is `f32` for real work and `f64` for gradient checking: every op is generic over
//! [`Float`] so the finite-difference checks in `autodiff::check` exercise the very same code.
//!
//! ## Matrix multiply
//! [`gemm`] computes `C ← α·op(A)·op(B) + β·C` through `matrixmultiply::{sgemm, dgemm}`. A
//! transpose is a [`MatRef`] with swapped strides — no copy. `β = 0` overwrites `C` (its old
//! contents are never read, so uninitialised or NaN memory is harmless); `β = 1` accumulates,
//! which is how backward passes add a second contribution into a gradient buffer.
//!
//! Large products are split across rayon tasks into tiles of C, or, when the inner dimension is
//! long and C small (a weight gradient `xᵀ·∂y` over thousands of tokens), into slices of the
//! inner dimension whose partial products are then added in slice order (`gemm_split`). The
//! split depends only on the matrix shape, so every element of C is the same sum in the same
//! order whatever the thread count: results are bit-identical for 1 and N threads.

use rayon::prelude::*;
use std::fmt::{Debug, Display};
use std::mem::MaybeUninit;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// The element types igpt computes in: `f32` (real work) and `f64` (gradient checks).
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// `f32` or `f64`, for messages and file headers.
    const NAME: &'static str;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    /// `exp` of every element of `xs`, in place. f32: glibc's `expf` on slices
    /// (`kernels::expf`, vectorised); f64: `exp` element by element.
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;

    /// Raw BLAS-style GEMM on strided matrices (`matrixmultiply`'s `sgemm` or `dgemm`).
    ///
    /// # Safety
    /// The pointers and strides must describe matrices of the given sizes inside live buffers,
    /// and `c` must not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f32";
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn exp_in_place(xs: &mut [Self]) {
        crate::kernels::expf::exp_in_place(xs)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f64";
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f32(x: f32) -> Self {
        f64::from(x)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// A contiguous row-major array of `T` with a shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T: Float = f32> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    /// A tensor of `shape` holding `data` (row-major).
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape` (a programming error, not a user input).
    pub fn new(shape: &[usize], data: Vec<T>) -> Self {
        let n: usize = shape.iter().product();
        assert_eq!(n, data.len(), "Tensor::new: shape {shape:?} needs {n} elements");
        Tensor { shape: shape.to_vec(), data }
    }

    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::new(shape, vec![T::ZERO; shape.iter().product()])
    }

    /// A one-element tensor of shape `[]`.
    pub fn scalar(x: T) -> Self {
        Tensor::new(&[], vec![x])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The size of the last axis (1 for a scalar).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// The number of rows when all leading axes are flattened: `len / cols`.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.cols()).unwrap_or(0)
    }

    /// The same data under another shape of equal size.
    ///
    /// # Panics
    /// If the sizes differ.
    pub fn reshape(mut self, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        assert_eq!(n, self.data.len(), "reshape {:?} -> {shape:?}", self.shape);
        self.shape = shape.to_vec();
        self
    }

    /// Element-wise conversion to another float type (f64 → f32 rounds to nearest).
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor::new(&self.shape, self.data.iter().map(|&x| U::from_f64(x.to_f64())).collect())
    }

    /// The single value of a one-element tensor.
    ///
    /// # Panics
    /// If the tensor does not hold exactly one element.
    pub fn item(&self) -> T {
        assert_eq!(self.data.len(), 1, "item() of a tensor of shape {:?}", self.shape);
        self.data[0]
    }

    /// True when every element is finite (no NaN, no ±inf).
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }
}

/// A read-only matrix view: `rows × cols` elements at `data[r·rs + c·cs]`.
///
/// [`MatRef::t`] swaps the strides, which is how a transposed operand reaches [`gemm`] without
/// a copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix stored contiguously at the start of `data`.
    ///
    /// # Panics
    /// If `data` is too short.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A `rows × cols` matrix with explicit row and column strides (in elements).
    ///
    /// # Panics
    /// If the last element lies outside `data`.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(last < data.len(), "MatRef {rows}x{cols} (rs {rs}, cs {cs}) out of bounds");
        }
        MatRef { data, rows, cols, rs, cs }
    }

    /// The transpose (a view; nothing is copied).
    pub fn t(self) -> Self {
        MatRef { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Rows `r0..r0 + rows`, columns `c0..c0 + cols` (a view; nothing is copied).
    ///
    /// # Panics
    /// If the block reaches past the last row or column.
    pub fn block(self, (r0, rows): (usize, usize), (c0, cols): (usize, usize)) -> Self {
        assert!(r0 + rows <= self.rows && c0 + cols <= self.cols, "MatRef::block out of range");
        let data =
            if rows == 0 || cols == 0 { &[] } else { &self.data[r0 * self.rs + c0 * self.cs..] };
        MatRef { data, rows, cols, rs: self.rs, cs: self.cs }
    }

    /// Rows `range` (a view; nothing is copied).
    ///
    /// # Panics
    /// If the range reaches past the last row.
    pub fn row_range(self, range: std::ops::Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= self.rows,
            "MatRef: rows {range:?} of {}",
            self.rows
        );
        let data =
            if range.is_empty() { &self.data[..0] } else { &self.data[range.start * self.rs..] };
        MatRef { data, rows: range.len(), ..self }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.data[i * self.rs + j * self.cs]
    }
}

/// What a product's output starts from: `C = start + A·B`.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a, T> {
    /// `C = A·B` (the old contents of C are ignored).
    Zero,
    /// `C = C + A·B`.
    Accumulate,
    /// `C = b + A·B`, the bias row `b` added to every row.
    Bias(&'a [T]),
}

impl<T> Start<'_, T> {
    /// `Accumulate` or `Zero`: a gradient's later or first contribution (see `GradSlot`).
    pub fn accumulate(yes: bool) -> Self {
        if yes {
            Start::Accumulate
        } else {
            Start::Zero
        }
    }
}

/// `C = start + A·B` on [`gemm`], for any strides and either float type.
///
/// # Panics
/// If the inner dimensions disagree, `c` is too short, or a bias is not `B.cols` long.
pub fn gemm_start<T: Float>(a: MatRef<T>, b: MatRef<T>, start: Start<T>, c: &mut [T]) {
    let beta = match start {
        Start::Zero => T::ZERO,
        Start::Accumulate => T::ONE,
        Start::Bias(bias) => {
            assert_eq!(bias.len(), b.cols, "gemm_start: bias must have {} entries", b.cols);
            c.chunks_exact_mut(b.cols).for_each(|row| row.copy_from_slice(bias));
            T::ONE
        }
    };
    gemm(T::ONE, a, b, beta, c)
}

/// How many tiles a large product is cut into: enough to keep a few cores busy.
const GEMM_TILES: usize = 4;

/// The tile of C one parallel task computes. Each `matrixmultiply` call packs its own copies of
/// A and B, so cutting C into `tiles_m × tiles_n` tiles costs `tiles_n·m·k + tiles_m·k·n`
/// element copies. Among the splits into at least [`GEMM_TILES`] tiles (halving rows or columns,
/// rows in multiples of 16, columns in multiples of 32), this picks the one that copies least.
/// The choice depends only on the shapes — never on the thread count — so the split is
/// deterministic.
fn gemm_tile(m: usize, n: usize, k: usize) -> (usize, usize) {
    let mut best = (m, n, usize::MAX);
    for row_parts in [1, 2, 4, 8] {
        for col_parts in [1, 2, 4, 8] {
            let tm = m.div_ceil(row_parts).next_multiple_of(16).min(m);
            let tn = n.div_ceil(col_parts).next_multiple_of(32).min(n);
            let (tiles_m, tiles_n) = (m.div_ceil(tm), n.div_ceil(tn));
            if tiles_m * tiles_n < GEMM_TILES.min(row_parts * col_parts) {
                continue;
            }
            let copies = tiles_n * m * k + tiles_m * k * n;
            let enough = tiles_m * tiles_n >= GEMM_TILES;
            let best_enough = m.div_ceil(best.0) * n.div_ceil(best.1) >= GEMM_TILES;
            if (enough && !best_enough) || (enough == best_enough && copies < best.2) {
                best = (tm, tn, copies);
            }
        }
    }
    (best.0, best.1)
}

/// How a large product is cut into parallel tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// Tiles of `C` of `tm × tn` (see [`gemm_tile`]).
    Tiles(usize, usize),
    /// [`INNER_PARTS`] consecutive slices of the inner dimension (see [`gemm_inner_parts`]).
    Inner,
}

/// Slices of the inner dimension in a [`Split::Inner`] product.
const INNER_PARTS: usize = GEMM_TILES;

/// The split of an `m × k × n` product that copies least. Tiles of `C` (the best of
/// [`gemm_tile`]) pack `A` once per column of tiles and `B` once per row of tiles; slices of
/// the inner dimension pack each operand once, at the price of adding `INNER_PARTS − 1` partial
/// products of `m × n`. The slices win when `k` is long and `C` small: `∂W = xᵀ·∂y`, whose `k`
/// is the batch's token count. On the emoji preset (`k` = 8,192, `m, n` ∈ {128, 384, 512}) the
/// tiles copied `A` four times and the packing took 6.5 % of a training step; with slices, 4 %
/// (`perf`, one thread).
fn gemm_split(m: usize, n: usize, k: usize) -> Split {
    let (tm, tn) = gemm_tile(m, n, k);
    let tiled = n.div_ceil(tn) * m * k + m.div_ceil(tm) * k * n;
    let sliced = (m + n) * k + (INNER_PARTS - 1) * m * n;
    if k >= 16 * INNER_PARTS && sliced < tiled {
        Split::Inner
    } else {
        Split::Tiles(tm, tn)
    }
}

/// Products below this many multiply-adds run as one call: splitting would cost more than it saves.
const GEMM_PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// A raw pointer that may cross into rayon tasks; each task writes a disjoint block of C.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// `C ← α·A·B + β·C` with `C` row-major `[A.rows, B.cols]` with row stride `ldc`.
///
/// # Panics
/// If the inner dimensions disagree or `c` is too short.
pub fn gemm_ld<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], ldc: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions {} and {} differ", a.cols, b.rows);
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm: C buffer too small");
    // SAFETY: `c` holds the `m × n` block at row stride `ldc` (checked above), is initialised,
    // and is a `&mut`, so it cannot alias A or B.
    unsafe { gemm_blocks(alpha, a, b, beta, SendPtr(c.as_mut_ptr()), ldc, |_, _, _, _| {}) }
}

/// `bias + A·B` (or `A·B`) into a new row-major `[A.rows, B.cols]` buffer on [`gemm`]: with a
/// bias, [`gemm_bias_rows`].
///
/// # Panics
/// If the inner dimensions disagree or a bias is not `B.cols` long.
pub fn gemm_new<T: Float>(a: MatRef<T>, b: MatRef<T>, bias: Option<&[T]>) -> Vec<T> {
    match bias {
        Some(bias) => gemm_bias_rows(a, b, bias),
        None => {
            let mut c = vec![T::ZERO; a.rows * b.cols];
            gemm(T::ONE, a, b, T::ZERO, &mut c);
            c
        }
    }
}

/// `C = bias + A·B` into a new `[A.rows, B.cols]` buffer, `bias` added to every row — HF
/// Conv1D's forward. The same arithmetic as filling C with the bias rows and calling [`gemm`]
/// with `β = 1`, but each parallel task writes the bias into its own block of C just before
/// multiplying into it: C is never zeroed first, and its block is in cache when the product
/// reads it back.
///
/// # Panics
/// If the inner dimensions disagree or `bias` is not `B.cols` long.
pub fn gemm_bias_rows<T: Float>(a: MatRef<T>, b: MatRef<T>, bias: &[T]) -> Vec<T> {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions {} and {} differ", a.cols, b.rows);
    let (m, n) = (a.rows, b.cols);
    assert_eq!(bias.len(), n, "gemm_bias_rows: bias must have {n} entries");
    let mut c: Vec<T> = Vec::with_capacity(m * n);
    if m == 0 || n == 0 {
        return c;
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    let fill = move |r0: usize, mr: usize, c0: usize, nc: usize| {
        for r in r0..r0 + mr {
            // SAFETY: row r, columns c0..c0+nc lie inside the m × n capacity of `c`, and each
            // block is written by one task only.
            unsafe { std::ptr::copy_nonoverlapping(&bias[c0], { c_ptr }.0.add(r * n + c0), nc) };
        }
    };
    // SAFETY: `c` has room for m × n elements at row stride n; every block is filled by `fill`
    // before the product reads it (β = 1), so every element is initialised when `set_len` runs.
    unsafe {
        gemm_blocks(T::ONE, a, b, T::ONE, c_ptr, n, fill);
        c.set_len(m * n);
    }
    c
}

/// Runs the product block by block (one `matrixmultiply` call per block, blocks in parallel
/// for large products; see [`gemm_tile`]), calling `prepare(r0, mr, c0, nc)` on each block of C
/// right before multiplying into it.
///
/// # Safety
/// `c` must point to an `m × n` block with row stride `ldc` that does not alias A or B, and must
/// be initialised wherever `beta ≠ 0` unless `prepare` initialises it.
unsafe fn gemm_blocks<T: Float>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c_ptr: SendPtr<T>,
    ldc: usize,
    prepare: impl Fn(usize, usize, usize, usize) + Sync,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let prepare = &prepare;
    // One block of C: rows r0..r0+mr, columns c0..c0+nc.
    let block = move |r0: usize, mr: usize, c0: usize, nc: usize| {
        prepare(r0, mr, c0, nc);
        let (a, b) = (a.block((r0, mr), (0, k)), b.block((0, k), (c0, nc)));
        // SAFETY: blocks of C are disjoint, and the caller vouches for C.
        unsafe { gemm_call(alpha, a, b, beta, { c_ptr }.0.add(r0 * ldc + c0), ldc) }
    };
    if m * n * k.max(1) < GEMM_PARALLEL_MIN_FLOPS {
        block(0, m, 0, n);
        return;
    }
    let (tm, tn) = match gemm_split(m, n, k) {
        Split::Tiles(tm, tn) => (tm, tn),
        Split::Inner => {
            prepare(0, m, 0, n);
            // SAFETY: as promised by the caller; `prepare` has initialised C if it had to.
            return unsafe { gemm_inner_parts(alpha, a, b, beta, c_ptr, ldc) };
        }
    };
    let (tiles_m, tiles_n) = (m.div_ceil(tm), n.div_ceil(tn));
    (0..tiles_m * tiles_n).into_par_iter().for_each(|t| {
        let (r0, c0) = ((t / tiles_n) * tm, (t % tiles_n) * tn);
        block(r0, tm.min(m - r0), c0, tn.min(n - c0))
    });
}

/// `C ← α·Σ_s A[:, K_s]·B[K_s, :] + β·C` over [`INNER_PARTS`] consecutive slices `K_s` of the
/// inner dimension, one `matrixmultiply` call each, in parallel: slice 0 goes into `C` itself
/// (with `β`), the others into buffers of their own, which are then added to `C` in slice
/// order. Each element is `((C₀ + P₁) + P₂) + P₃` whatever the thread count.
///
/// # Safety
/// As [`gemm_blocks`], with `C` initialised wherever `beta ≠ 0`.
unsafe fn gemm_inner_parts<T: Float>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c_ptr: SendPtr<T>,
    ldc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let len = k.div_ceil(INNER_PARTS);
    // Not zeroed: with β = 0 each slice's call overwrites its whole block.
    let mut partial: Vec<T> = Vec::with_capacity((INNER_PARTS - 1) * m * n);
    let partial_ptr = SendPtr(partial.as_mut_ptr());
    (0..INNER_PARTS).into_par_iter().for_each(|s| {
        let inner = (s * len).min(k)..((s + 1) * len).min(k);
        let (c, ldc, beta) = match s {
            0 => ({ c_ptr }.0, ldc, beta),
            // SAFETY: slice s ≥ 1 owns the (s − 1)-th m × n block of `partial`'s capacity.
            _ => (unsafe { { partial_ptr }.0.add((s - 1) * m * n) }, n, T::ZERO),
        };
        let (a, b) = (
            a.block((0, m), (inner.start, inner.len())),
            b.block((inner.start, inner.len()), (0, n)),
        );
        // SAFETY: each task writes its own C block (C itself, or its block of `partial`).
        unsafe { gemm_call(alpha, a, b, beta, c, ldc) }
    });
    // SAFETY: slices 1.. have written every element of their blocks (β = 0 overwrites, and no
    // slice is empty: k ≥ 16·INNER_PARTS leaves the last one at least (k − 9)/4 long).
    unsafe { partial.set_len((INNER_PARTS - 1) * m * n) };
    let partial = &partial;
    (0..m).into_par_iter().for_each(|r| {
        // SAFETY: row r of C (n elements at r·ldc), written by this task alone.
        let row = unsafe { std::slice::from_raw_parts_mut({ c_ptr }.0.add(r * ldc), n) };
        for part in partial.chunks_exact(m * n) {
            for (x, &p) in row.iter_mut().zip(&part[r * n..][..n]) {
                *x += p;
            }
        }
    });
}

/// One `matrixmultiply` call: `C ← α·A·B + β·C` into the block at `c` (row stride `ldc`).
///
/// # Safety
/// `c` must point to an `a.rows × b.cols` block with row stride `ldc` that aliases neither
/// view, initialised wherever `beta ≠ 0`.
unsafe fn gemm_call<T: Float>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    // SAFETY: the views were bounds-checked when made; the caller vouches for C.
    unsafe {
        T::gemm_raw(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c,
            ldc as isize,
            1,
        )
    }
}

/// `C ← α·A·B + β·C` with `C` contiguous row-major `[A.rows, B.cols]`.
pub fn gemm<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    let ldc = b.cols;
    gemm_ld(alpha, a, b, beta, c, ldc)
}

/// The plain triple loop that [`gemm`] is tested against (f64 accumulation, any strides).
pub fn gemm_reference<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a.data[i * a.rs + p * a.cs].to_f64() * b.data[p * b.rs + j * b.cs].to_f64();
            }
            let old = if beta == T::ZERO { 0.0 } else { beta.to_f64() * c[i * n + j].to_f64() };
            c[i * n + j] = T::from_f64(alpha.to_f64() * s + old);
        }
    }
}

/// A new `len`-element buffer whose chunks of `chunk` elements are written in parallel:
/// `write(start, part)` gets `part` (elements `start..start + part.len()`) zeroed and must
/// overwrite whatever of it should not stay zero.
///
/// Why not `vec![0; len]` and then write: zeroing megabytes first is a whole extra pass over
/// memory. Here each chunk is cleared just before `write` fills it, while it sits in cache.
pub(crate) fn new_parallel<T: Float>(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    new_parallel_from(len, chunk, cleared, write)
}

/// [`new_parallel`] for a buffer of rows of `row.len()` elements whose chunks start as copies of
/// `row` instead of zeros (`chunk` a multiple of the row length): a product that starts from a
/// bias row writes each element once before multiplying into it, not zero and then the bias.
///
/// # Panics
/// If `row` is empty or does not divide `chunk` or `len`.
pub(crate) fn new_parallel_rows<T: Float>(
    len: usize,
    chunk: usize,
    row: &[T],
    write: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let n = row.len();
    let whole_rows = n > 0 && chunk.is_multiple_of(n) && len.is_multiple_of(n);
    assert!(whole_rows, "new_parallel_rows: chunks of {chunk} and {len} in all, rows of {n}");
    new_parallel_from(len, chunk, |part| rows_of(part, row), write)
}

/// [`new_parallel`] with the chunks' starting values set by `init`, which must initialise all of
/// the chunk it is given.
fn new_parallel_from<T: Float>(
    len: usize,
    chunk: usize,
    init: impl Fn(&mut [MaybeUninit<T>]) -> &mut [T] + Sync,
    write: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    // No side output: one zero-sized piece per chunk.
    let mut none = vec![(); len.div_ceil(chunk.max(1))];
    filled_parallel(len, chunk, (&mut none, 1), init, |first, part, _| write(first, part))
}

/// [`new_parallel`] with a second output: task `c` also gets the `c`-th piece of `side`
/// (pieces of `side_chunk` elements), e.g. a norm's per-row statistics beside its rows.
///
/// # Panics
/// If `side` does not have a piece for every chunk of the buffer.
pub(crate) fn new_parallel_with<T: Float, U: Send>(
    len: usize,
    chunk: usize,
    side: (&mut [U], usize),
    write: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) -> Vec<T> {
    filled_parallel(len, chunk, side, cleared, write)
}

/// The one body of the `new_parallel` family: chunks set by `init` (which must initialise all
/// of the chunk it is given), then written by `write` beside their pieces of `side`.
fn filled_parallel<T: Float, U: Send>(
    len: usize,
    chunk: usize,
    (side, side_chunk): (&mut [U], usize),
    init: impl Fn(&mut [MaybeUninit<T>]) -> &mut [T] + Sync,
    write: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) -> Vec<T> {
    let (chunk, side_chunk) = (chunk.max(1), side_chunk.max(1));
    let pieces = side.len().div_ceil(side_chunk);
    assert!(pieces >= len.div_ceil(chunk), "new_parallel_with: side has too few pieces");
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .zip(side.par_chunks_mut(side_chunk))
        .enumerate()
        .for_each(|(c, (part, side))| write(c * chunk, init(part), side));
    // SAFETY: the chunks cover all `len` elements (`side` has a piece for each, asserted above)
    // and `init` initialised each.
    unsafe { v.set_len(len) };
    v
}

/// `len` zeros, written by parallel tasks: one thread zeroes megabytes at about half the speed
/// of two (a gradient buffer that has no spare to reuse, see `autodiff::Grads`).
pub(crate) fn zeros_parallel<T: Float>(len: usize) -> Vec<T> {
    new_parallel(len, 1 << 15, |_, _| {})
}

/// `part` set to zeros (while it is about to be written, in cache), as initialised floats.
fn cleared<T: Float>(part: &mut [MaybeUninit<T>]) -> &mut [T] {
    for x in part.iter_mut() {
        x.write(T::ZERO);
    }
    // SAFETY: every element was initialised just above; MaybeUninit<T> has T's layout.
    unsafe { &mut *(part as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `part` (whole rows of `row.len()`) set to copies of `row`, as initialised floats.
fn rows_of<'a, T: Float>(part: &'a mut [MaybeUninit<T>], row: &[T]) -> &'a mut [T] {
    for dst in part.chunks_exact_mut(row.len()) {
        for (x, &r) in dst.iter_mut().zip(row) {
            x.write(r);
        }
    }
    // SAFETY: `part` holds whole rows (the caller's chunks and length are multiples of the row
    // length), every element of which was initialised just above.
    unsafe { &mut *(part as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Sums per-row vectors over `rows` rows in a fixed order, returning `cols` sums.
///
/// `add_row(r, acc)` adds row `r`'s contribution into `acc`. Rows are cut into blocks of
/// `ROW_SUM_BLOCK`; each block is summed serially (blocks run in parallel), then the block
/// partials are added serially in block order. The result depends only on the data, never on the
/// number of threads — the deterministic replacement for a rayon `sum`.
pub fn sum_rows_fixed_order<T: Float>(
    rows: usize,
    cols: usize,
    add_row: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let partials: Vec<Vec<T>> = (0..rows.div_ceil(ROW_SUM_BLOCK))
        .into_par_iter()
        .map(|blk| {
            let mut acc = vec![T::ZERO; cols];
            for r in blk * ROW_SUM_BLOCK..((blk + 1) * ROW_SUM_BLOCK).min(rows) {
                add_row(r, &mut acc);
            }
            acc
        })
        .collect();
    add_in_order(&partials, cols)
}

/// Rows per block of [`sum_rows_fixed_order`].
pub(crate) const ROW_SUM_BLOCK: usize = 32;

/// `Σ_b partials[b]` (each `cols` long), added in block order: the last step of
/// [`sum_rows_fixed_order`], for ops that compute their block partials themselves.
pub(crate) fn add_in_order<T: Float>(partials: &[Vec<T>], cols: usize) -> Vec<T> {
    let mut total = vec![T::ZERO; cols];
    for p in partials {
        for (t, &x) in total.iter_mut().zip(p) {
            *t += x;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    fn random(n: usize, stream: u64) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Philox::new(3).fill_normal(stream, 0.0, 1.0, &mut v);
        v
    }

    fn check_against_reference(m: usize, k: usize, n: usize, ta: bool, tb: bool, beta: f32) {
        let a_data = random(m * k, 1);
        let b_data = random(k * n, 2);
        let a = if ta { MatRef::new(&a_data, k, m).t() } else { MatRef::new(&a_data, m, k) };
        let b = if tb { MatRef::new(&b_data, n, k).t() } else { MatRef::new(&b_data, k, n) };
        let mut c = random(m * n, 3);
        let mut c_ref = c.clone();
        gemm(0.5, a, b, beta, &mut c);
        gemm_reference(0.5, a, b, beta, &mut c_ref);
        for (x, y) in c.iter().zip(&c_ref) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{k}x{n} {ta} {tb}: {x} vs {y}");
        }
    }

    #[test]
    fn gemm_matches_reference_for_all_transposes() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (130, 17, 9), (2, 300, 700), (129, 33, 65)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check_against_reference(m, k, n, ta, tb, 0.0);
                check_against_reference(m, k, n, ta, tb, 1.0);
            }
        }
    }

    #[test]
    fn gemm_bias_rows_equals_bias_filled_gemm_bit_for_bit() {
        for (m, k, n) in [(0, 3, 4), (1, 1, 1), (3, 5, 7), (300, 70, 90), (1030, 64, 200)] {
            let (a, b, bias) = (random(m * k, 6), random(k * n, 7), random(n, 8));
            let (a, b) = (MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            let mut want: Vec<f32> = bias.repeat(m);
            gemm(1.0, a, b, 1.0, &mut want);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| gemm_bias_rows(a, b, &bias))
            };
            assert_eq!(run(1), want, "{m}x{k}x{n}");
            assert_eq!(run(2), want, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn long_inner_products_are_cut_into_slices_of_the_inner_dimension() {
        // ∂W = xᵀ·∂y of the emoji preset's c_attn: slices; a square product: tiles.
        assert_eq!(gemm_split(128, 384, 8192), Split::Inner);
        assert!(matches!(gemm_split(512, 512, 512), Split::Tiles(..)));
        let (m, k, n) = (64, 4000, 96);
        assert_eq!(gemm_split(m, n, k), Split::Inner);
        for beta in [0.0, 1.0] {
            check_against_reference(m, k, n, true, false, beta);
        }
        let (a, b, bias) = (random(k * m, 9), random(k * n, 10), random(n, 11));
        let (a, b) = (MatRef::new(&a, k, m).t(), MatRef::new(&b, k, n));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| gemm_bias_rows(a, b, &bias))
        };
        assert!(run(1) == run(2), "the slices' sums differ between 1 and 2 threads");
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 4.0];
        let mut c = [f32::NAN];
        gemm(1.0, MatRef::new(&a, 1, 2), MatRef::new(&b, 2, 1), 0.0, &mut c);
        assert_eq!(c[0], 11.0);
    }

    #[test]
    fn gemm_is_bit_identical_for_one_and_two_threads() {
        let (m, k, n) = (300, 70, 90);
        let a = random(m * k, 4);
        let b = random(k * n, 5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0f32; m * n];
            pool.install(|| gemm(1.0, MatRef::new(&a, m, k), MatRef::new(&b, k, n), 0.0, &mut c));
            c
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn fixed_order_row_sums_are_exact_on_integers() {
        let s: Vec<f64> = sum_rows_fixed_order(1000, 2, |r, acc: &mut [f64]| {
            acc[0] += r as f64;
            acc[1] += 1.0;
        });
        assert_eq!(s, vec![499_500.0, 1000.0]);
    }
}
