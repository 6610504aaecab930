"""What every stage shares and none owns: the wire protocol, the build manifest, board profiles, placement."""
