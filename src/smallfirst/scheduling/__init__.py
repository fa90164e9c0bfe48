"""Deferrable work scheduled by the grid: carbon and price signals and the planner.

``signal`` opens hourly signals (constant, trace files, forecast APIs); ``planner`` chooses
the hours a batch runs in; ``estimate`` turns a batch's token counts into its duration and
energy. Nothing here serves HTTP or touches the store.
"""
