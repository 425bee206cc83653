"""The status page's sections, each a pure function from plain values to HTML (xds.debug.page puts
them together). Every string that comes from outside (broker hosts, node ids, identities, error
messages) is escaped where it is written; nothing here runs a script or loads anything."""
