"""One module per resource, each with its own RouteTableDef `routes`."""
