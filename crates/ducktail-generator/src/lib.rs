//! ducktail-generator
