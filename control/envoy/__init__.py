"""Envoy as the data plane: the bootstrap generated from the config (`bootstrap`), semroute as
Envoy's ext_proc processor (`processor`, over the serving pipeline's steps in `decider`), and
the processes of `semroute envoy` (`run`)."""
