// Node-to-node RPC lives here (see docs/cluster.md).
