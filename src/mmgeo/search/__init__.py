"""Search: stage 1 GPS hypotheses, region cells, geo-filtered vector search and rerank, and result output."""
