"""Visual outputs for people: contact sheets and display conversions."""
