"""The REST API: one APIView per operation, each a thin edge over a service or a selector.

Modules by resource: `sessions` (configuration, import and export), `batches` (launch, watch,
cancel, export results), `runs` (a negotiation's record, transcript and analytics), `live` (a person
as the buyer) and `stream` (server-sent events). `errors` turns every failure into the one error
shape, `common` holds the parsers, renderers, pagination and owner scoping they share.
"""
