// Package e2e holds the tests whose subject spans services: identityd with
// keyd, certd and the cloud; modules reaching identity through modrtd's
// workload socket; compiled grants in the real polkitd and keyd. They run on
// testenv.Device. The package has no code of its own.
package e2e
