"""Political-bias audits: Political Compass style agreement, and opinion alignment with survey groups."""
