"""Metrics: ranking metrics of a fitted recommender (`ranking`, on the top-k lists of
`top_k`) and how well a defense told fake users from genuine ones (`detection`)."""
