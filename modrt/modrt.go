// Package modrt is the domain of the Module Runtime: edge modules, their
// specs (aziot-edged's ModuleSpec with Docker-shaped createOptions) and the
// policy they run under, served over a Backend (the containerd one is
// package ctrd; the log store is logstore; the D-Bus adapter is adapter).
package modrt
