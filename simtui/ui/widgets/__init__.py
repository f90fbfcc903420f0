"""The dashboard's widgets: hosts panel, jobs table, log pane."""
