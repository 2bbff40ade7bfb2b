package modrt

// Bus names of the Module Runtime.
const (
	BusName         = "org.edgev2.ModuleRuntime1"
	ObjectPath      = "/org/edgev2/ModuleRuntime1" // a godbus.ObjectPath where used
	Interface       = "org.edgev2.ModuleRuntime1"
	ModuleInterface = "org.edgev2.ModuleRuntime1.Module"
	Collection      = "modules"
)

// polkit actions.
const (
	ActionRead   = "org.edgev2.modules.read"
	ActionManage = "org.edgev2.modules.manage"
)
