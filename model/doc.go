// Package model will hold the torchvision-compatible Inception-v3 encoder, the
// LSTM decoder and greedy/beam decoding (issue #4). It is empty until then.
package model
