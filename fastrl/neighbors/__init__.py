"""k-nearest-neighbour graphs: exact blocked brute force and NN-descent."""
from fastrl.neighbors.cpu_kernel import use_cpu_kernel
from fastrl.neighbors.knn import knn_graph, knn_query
from fastrl.neighbors.reference import knn_reference

__all__ = ["knn_graph", "knn_query", "knn_reference", "use_cpu_kernel"]
