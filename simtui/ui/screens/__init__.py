"""Full screens and modals of the dashboard."""
