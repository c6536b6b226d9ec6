//! The one error type of the crate.

use thiserror::Error;

/// Everything that can go wrong in `wgpu-cnn`. Shape errors carry the offending shapes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// A stride of zero along some axis.
    #[error("stride must be at least 1, got (h {0}, w {1})")]
    ZeroStride(usize, usize),

    /// A kernel (filter or pooling window) with a zero extent.
    #[error("kernel must be at least 1x1, got {0}x{1}")]
    ZeroKernel(usize, usize),

    /// A tensor with a zero-length axis where the op needs elements.
    #[error("{what} has an empty axis: shape {shape:?}")]
    EmptyTensor {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// An argument with the wrong number of axes.
    #[error("{what} must have {expected} axes, got shape {shape:?}")]
    Rank {
        /// Which argument.
        what: &'static str,
        /// How many axes it must have.
        expected: usize,
        /// The shape it has.
        shape: Vec<usize>,
    },

    /// The weights' input channels differ from the activation's channels.
    #[error("channel mismatch: input {input:?} has {} channels, weights {weights:?} expect {}", input[3], weights[2])]
    ChannelMismatch {
        /// Input shape `(m, n_H, n_W, n_C)`.
        input: [usize; 4],
        /// Weight shape `(f_h, f_w, n_C_prev, n_C)`.
        weights: [usize; 4],
    },

    /// The bias does not hold one value per output channel.
    #[error("bias of shape {bias:?} does not match {channels} output channels: expected (1, 1, 1, {channels}) or ({channels},)")]
    BiasShape {
        /// The bias shape given.
        bias: Vec<usize>,
        /// The number of output channels of the weights.
        channels: usize,
    },

    /// The kernel does not fit in the padded input: the output would be empty.
    #[error("kernel {kernel:?} is larger than the padded input {padded:?} (input {input:?})")]
    KernelTooLarge {
        /// Input shape `(m, n_H, n_W, n_C)`.
        input: [usize; 4],
        /// Kernel extent `(f_h, f_w)`.
        kernel: [usize; 2],
        /// Padded spatial size `(n_H + top + bottom, n_W + left + right)`.
        padded: [usize; 2],
    },

    /// Two shapes that must agree do not.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// What was being checked.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },

    /// An array or window is too large for what the op can index or allocate.
    #[error("{what} of shape {shape:?} ({bytes} bytes) exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which tensor or part of it.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes needed.
        bytes: u64,
        /// The limit that it exceeds.
        limit: u64,
    },

    /// A size computed from shapes and hyperparameters (a padded extent such as
    /// `n_H + top + bottom`) does not fit in `usize`. Checked before anything is allocated.
    #[error("{what} overflows usize: operands {operands:?}, input shape {input:?}")]
    SizeOverflow {
        /// The size and its formula, e.g. `"padded height n_H + top + bottom"`.
        what: &'static str,
        /// The operands of the formula, in its order.
        operands: Vec<usize>,
        /// Shape of the input the size belongs to.
        input: Vec<usize>,
    },

    /// The host's allocator refused an array below the size limit (out of memory).
    #[error("could not allocate {bytes} bytes on the host for {what} of shape {shape:?}")]
    HostOutOfMemory {
        /// Which tensor.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes requested.
        bytes: u64,
    },

    /// A tensor was used with a `Gpu` other than the one that made it.
    #[error("tensor of shape {shape:?} belongs to another Gpu")]
    ForeignTensor {
        /// Shape of the tensor.
        shape: Vec<usize>,
    },

    /// A window passed to the pooling helpers is empty.
    #[error("window is empty")]
    EmptyWindow,

    /// A value that the kernels' 32-bit index arithmetic cannot hold (a stride, a padding, an
    /// offset), with the shapes of the op it belongs to.
    #[error("{what} = {value} exceeds the kernels' 32-bit index limit of {limit} (input {input:?}, output {output:?})")]
    IndexRange {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The largest value the kernels take.
        limit: u64,
        /// Shape of the op's input.
        input: Vec<usize>,
        /// Shape of the op's output.
        output: Vec<usize>,
    },

    /// Work that one thread of a kernel would loop over for longer than the adapter runs a
    /// loop (see `Gpu::loop_budget`), which the kernel cannot split.
    #[error("{what} needs {iterations} loop iterations in one thread; the adapter stops loops after {limit} (shapes {shapes:?})")]
    AdapterLimit {
        /// Which op and loop.
        what: &'static str,
        /// Iterations one thread would run.
        iterations: u64,
        /// What the adapter allows.
        limit: u64,
        /// The shapes of the op.
        shapes: Vec<Vec<usize>>,
    },

    /// A group count that does not divide the channels (or is zero).
    #[error("{groups} groups do not divide {channels} channels")]
    Groups {
        /// Groups asked for.
        groups: usize,
        /// Channels of the input.
        channels: usize,
    },

    /// A setting outside its range: a learning rate that is negative or not finite, a batch of
    /// 0, a momentum or beta outside `[0, 1]`, a negative `eps`.
    #[error("{what} = {value}: must be {expected}")]
    Setting {
        /// The setting, with its owner (`"Adam: lr"`).
        what: &'static str,
        /// The value given, as Rust prints it (`NaN`, `-1`, `inf`).
        value: String,
        /// The range it must be in.
        expected: &'static str,
    },

    /// A class label not below the number of classes.
    #[error("label {label} of example {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Row of the label.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes (columns of the scores).
        classes: usize,
    },

    /// Batch norm in test mode before any running statistics exist.
    #[error("batch norm in test mode needs running statistics; run it in train mode first (channels {channels})")]
    NoRunningStats {
        /// Channels of the input.
        channels: usize,
    },

    /// One buffer passed both as an input and as the output of an op (clones of one tensor):
    /// the op would read what it is overwriting.
    #[error("{what}: the output of shape {shape:?} shares its buffer with an input")]
    Aliased {
        /// The op.
        what: &'static str,
        /// Shape of the output.
        shape: Vec<usize>,
    },

    /// Pooling padding as large as the window: a window could hold only padding.
    #[error("pooling padding (top, bottom, left, right) {padding:?} must be smaller than the window {kernel:?} on each side")]
    PoolPadding {
        /// `(top, bottom, left, right)`.
        padding: [usize; 4],
        /// The window `(f_h, f_w)`.
        kernel: [usize; 2],
    },

    /// A data file lacks a dataset.
    #[error("{path}: no dataset {name}")]
    DatasetMissing {
        /// The file.
        path: String,
        /// The dataset looked for.
        name: String,
    },

    /// A dataset of the wrong element type.
    #[error("{path}: dataset {name} holds {found}, expected {expected}")]
    DatasetType {
        /// The file.
        path: String,
        /// The dataset.
        name: String,
        /// What it should hold.
        expected: String,
        /// What it holds.
        found: String,
    },

    /// A dataset of the wrong shape.
    #[error("{path}: dataset {name} has shape {shape:?}, expected {expected}")]
    DatasetShape {
        /// The file.
        path: String,
        /// The dataset.
        name: String,
        /// The shape it should have.
        expected: String,
        /// The shape it has.
        shape: Vec<usize>,
    },

    /// A weights file of another model.
    #[error("{path} holds weights of model {found}, not {expected}")]
    WrongModel {
        /// The file.
        path: String,
        /// The model asked for.
        expected: String,
        /// The model in the file.
        found: String,
    },

    /// A network whose layers cannot be stacked (a convolution after a fully connected layer,
    /// a window larger than its input, no layer that gives class scores, ...).
    #[error("network {network}, layer {layer} ({kind}) on input {input}: {problem}")]
    Network {
        /// The network's name.
        network: String,
        /// The layer's index, from 0.
        layer: usize,
        /// The layer's kind.
        kind: &'static str,
        /// The per-image shape the layer receives, `(H, W, C)` or `(D,)`.
        input: String,
        /// What is wrong.
        problem: String,
    },

    /// The HDF5 library reported an error (a file that cannot be opened or read).
    #[error("HDF5: {0}")]
    Hdf5(String),

    /// A kernel could not be built (a bug in this crate: the message names the kernel).
    #[error("kernel {0}")]
    Kernel(String),

    /// No adapter matched the request.
    #[error("no wgpu adapter found: {0}")]
    NoAdapter(String),

    /// The adapter refused to create a device.
    #[error("could not create a device: {0}")]
    Device(String),

    /// The device reported an error (validation, out of memory, lost device).
    #[error("device error: {0}")]
    Gpu(String),
}

/// An HDF5 library error about the file at `path`, as [`Error::Hdf5`].
pub(crate) fn hdf5_error(path: &std::path::Path, e: hdf5::Error) -> Error {
    Error::Hdf5(format!("{}: {e}", path.display()))
}

/// Result with the crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
