// Package api is the Module Runtime's D-Bus contract (dbus/org.edgev2.ModuleRuntime1.xml):
// bus name, paths, interfaces, polkit actions, a{sv} keys and wire shapes, each written once.
// It imports no runtime code, so clients and other services can use it cheaply.
package api

import godbus "github.com/godbus/dbus/v5"

// Names on the bus.
const (
	BusName         = "org.edgev2.ModuleRuntime1"
	ObjectPath      = godbus.ObjectPath("/org/edgev2/ModuleRuntime1")
	Interface       = "org.edgev2.ModuleRuntime1"
	ModuleInterface = "org.edgev2.ModuleRuntime1.Module"
	// Collection is the path element modules' objects sit under
	// (/org/edgev2/ModuleRuntime1/modules/<escaped name>).
	Collection = "modules"
)

// polkit actions. The detail naming the module is DetailModuleID.
const (
	ActionRead     = "org.edgev2.modules.read"
	ActionManage   = "org.edgev2.modules.manage"
	DetailModuleID = "module_id"
)

// Methods of Interface.
const (
	MethodCreateModule  = "CreateModule"
	MethodListModules   = "ListModules"
	MethodImportImage   = "ImportImage"
	MethodPullImage     = "PullImage"
	MethodGetSystemInfo = "GetSystemInfo"
	SignalPullProgress  = "PullProgress"
)

// Methods of ModuleInterface.
const (
	MethodStart   = "Start"
	MethodStop    = "Stop"
	MethodRestart = "Restart"
	MethodRemove  = "Remove"
	MethodGetLogs = "GetLogs" // returns Docker's multiplexed log framing; modrt/logstore.ParseFrames reads it
)

// Properties of ModuleInterface.
const (
	PropName         = "Name"
	PropImage        = "Image"
	PropStatus       = "Status"
	PropExitCode     = "ExitCode"
	PropStartedAt    = "StartedAt"
	PropRestartCount = "RestartCount"
)

// a{sv} option keys, with their D-Bus signatures.
const (
	OptStart      = "start"      // CreateModule: b
	OptTail       = "tail"       // GetLogs: i
	OptSince      = "since"      // GetLogs: x (Unix seconds)
	OptUntil      = "until"      // GetLogs: x (Unix seconds)
	OptTimestamps = "timestamps" // GetLogs: b
	OptUsername   = "username"   // PullImage: s
	OptPassword   = "password"   // PullImage: s
)

// Option signatures per method, as the adapter checks them.
var (
	CreateModuleOptions = map[string]string{OptStart: "b"}
	GetLogsOptions      = map[string]string{OptTail: "i", OptSince: "x", OptUntil: "x", OptTimestamps: "b"}
	PullImageOptions    = map[string]string{OptUsername: "s", OptPassword: "s"}
)

// GetSystemInfo dictionary keys.
const (
	InfoOSType       = "os_type"
	InfoArchitecture = "architecture"
	InfoVersion      = "version"
	InfoHostname     = "hostname"
	InfoSnapshotter  = "snapshotter"
)
