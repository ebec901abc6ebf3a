package main

// agentAlive reports whether an agent holds dataDir. Agents run on Linux
// only, so none runs on this machine.
func agentAlive(string) bool { return false }
