"""RelCourse: train a search-relevance cross-encoder in four stages."""
