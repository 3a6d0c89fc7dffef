"""The job: a survey's YAML file, validated and expanded into fits with stable ids.

The first stage of the flow job -> execution -> results -> analysis -> report: nothing here
starts Ray or writes results.
"""
