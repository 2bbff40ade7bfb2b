// Package modrt is the domain of the Module Runtime: edge modules as
// containers under containerd, their specs (aziot-edged's ModuleSpec with
// Docker-shaped createOptions), supervision and logs.
package modrt
