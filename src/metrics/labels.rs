//! The enums of label values that reverse and agent mode count by, declared with their
//! `ALL` list and `as_str` in one go.

/// Declares an enum of label values with its `ALL` list and `as_str`.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $text:literal, )+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }
    };
}
