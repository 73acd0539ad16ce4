//! TypeScript agents: types are stripped on the deployer's machine with the oxc transformer (parser,
//! semantic analysis, TypeScript transform, code generation), so no Node.js is needed and the chain stores
//! plain JavaScript, exactly what the workers run.

use anyhow::{Result, bail};
use oxc_allocator::Allocator;
use oxc_codegen::Codegen;
use oxc_parser::Parser;
use oxc_semantic::SemanticBuilder;
use oxc_span::SourceType;
use oxc_transformer::{TransformOptions, Transformer};
use std::path::Path;

/// The JavaScript of the TypeScript module `source` (`name` appears in error messages): types, interfaces
/// and type-only imports removed, enums and other TypeScript syntax turned into JavaScript, nothing else
/// lowered.
pub(crate) fn strip_types(source: &str, name: &str) -> Result<String> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, SourceType::ts()).parse();
    if !parsed.errors.is_empty() {
        let first = parsed.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        bail!("{name} does not parse as TypeScript: {first}");
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new().with_excess_capacity(2.0).build(&program);
    let scoping = semantic.semantic.into_scoping();
    let options = TransformOptions::default();
    let ret = Transformer::new(&allocator, Path::new(name), &options).build_with_scoping(scoping, &mut program);
    if !ret.errors.is_empty() {
        let first = ret.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        bail!("{name} does not transform: {first}");
    }
    Ok(Codegen::new().build(&program).code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_stripped_and_the_rest_is_kept() {
        let js = strip_types(
            "interface Req { path: string }\nconst n: number = 1;\nexport default { async fetch(r: Req, env: any): Promise<Response> { return new Response(String(n) + r.path); } };\n",
            "a.ts",
        )
        .expect("strips");
        assert!(!js.contains("interface") && !js.contains(": number") && !js.contains("Promise<"), "{js}");
        assert!(js.contains("export default") && js.contains("new Response"), "{js}");
    }

    #[test]
    fn a_syntax_error_is_refused_with_the_file_name() {
        let e = strip_types("const x: = ;", "bad.ts").expect_err("refused");
        assert!(e.to_string().contains("bad.ts"), "{e}");
    }
}
