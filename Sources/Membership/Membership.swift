// The gossip shell lives here (see docs/gossip.md, "What the shell must do").
