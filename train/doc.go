// Package train will hold the experiment config, the training loop,
// checkpoints and the TensorBoard writer (issue #5). It is empty until then.
package train
