// Package cgroups holds a node's worker processes to what their tenant may
// use, in a control group per tenant: a memory limit, which the kernel
// enforces on everything the tenant's workers on the node touch together,
// and a CPU weight, which decides how the CPU is shared when it is
// contended.
//
// It uses cgroups v2 where the kernel offers them with the memory and cpu
// controllers to the agent's own group, and otherwise the v1 memory and
// cpu hierarchies. The groups live under the agent's own group, in a
// directory of the agent's (Open's name); on v2 the agent moves itself
// into a leaf of that group first ("no internal processes").
package cgroups
