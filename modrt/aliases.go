package modrt

import (
	"github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
	"github.com/edgev2/edgev2/modrt/policy"
)

// The runtime's configuration, module specs and policy live in leaf
// packages (modrt/config, modrt/modspec, modrt/policy) that programs use
// without linking containerd; these names keep the runtime's own code short.
type (
	Config         = config.Config
	ConfigError    = config.ConfigError
	LocalModule    = config.LocalModule
	NetworkConfig  = config.NetworkConfig
	ImageGCConfig  = config.ImageGCConfig
	PolicyConfig   = config.PolicyConfig
	Grant          = config.Grant
	WorkloadConfig = config.WorkloadConfig

	Spec        = modspec.Spec
	PortMapping = modspec.PortMapping
	LogConfig   = modspec.LogConfig

	Policy = policy.Policy
)

const (
	QuickstartEdgeCA = config.QuickstartEdgeCA
	EdgeHubModule    = config.EdgeHubModule

	DefaultNetworkName     = config.DefaultNetworkName
	DefaultNetworkBridge   = config.DefaultNetworkBridge
	DefaultNetworkSubnet   = config.DefaultNetworkSubnet
	DefaultCNIPluginDir    = config.DefaultCNIPluginDir
	DefaultNetworkStateDir = config.DefaultNetworkStateDir

	netModeDefault = modspec.NetModeDefault
	netModeHost    = modspec.NetModeHost
	netModeNone    = modspec.NetModeNone

	MaxSpecSize  = modspec.MaxSpecSize
	TypeDocker   = modspec.TypeDocker
	PullOnCreate = modspec.PullOnCreate
	PullNever    = modspec.PullNever
)

var (
	ErrPolicy         = policy.ErrPolicy
	ErrBindLink       = policy.ErrBindLink
	DockerDefaultCaps = policy.DockerDefaultCaps
	NeverBind         = config.NeverBind
)

// ParseSpec parses and checks a ModuleSpec JSON (modspec.ParseSpec).
func ParseSpec(data []byte) (*Spec, error) { return modspec.ParseSpec(data) }

// ValidateName checks a module name (modspec.ValidateName).
func ValidateName(name string) error { return modspec.ValidateName(name) }

// ParseConfig parses and validates modrtd config text (config.ParseConfig).
func ParseConfig(path string, data []byte) (*Config, error) { return config.ParseConfig(path, data) }

// LoadConfig reads and validates a modrtd config file (config.LoadConfig).
func LoadConfig(path string) (*Config, error) { return config.LoadConfig(path) }

// ModulePolicy is the module policy cfg sets (policy.FromConfig).
func ModulePolicy(cfg *Config) Policy { return policy.FromConfig(cfg) }
